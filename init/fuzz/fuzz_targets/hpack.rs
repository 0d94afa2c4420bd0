//! HPACK decoding (`liftoff_init::health::hpack`), RFC 7541.
//!
//! - Huffman: a string that decodes encodes back to exactly its bytes (the code is
//!   prefix-free and the padding is fixed), and any bytes encode and decode to themselves.
//! - Header blocks: the input is two blocks for one decoder (the first byte says where the
//!   second starts), so the dynamic table carries over as on a connection. Decoding never
//!   panics, the table stays within the announced 4096 bytes, and decoded fields written
//!   back as literals decode to the same fields.
#![no_main]

use libfuzzer_sys::fuzz_target;
use liftoff_init::health::hpack::{encode_literal, huffman_decode, huffman_encode, Decoder};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = huffman_decode(data) {
        assert_eq!(huffman_encode(&text), data);
    }
    assert_eq!(huffman_decode(&huffman_encode(data)).as_deref(), Ok(data));

    let Some((&cut, blocks)) = data.split_first() else {
        return;
    };
    let (first, second) = blocks.split_at(usize::from(cut).min(blocks.len()));
    let mut decoder = Decoder::default();
    for block in [first, second] {
        let Ok(fields) = decoder.decode(block) else {
            return;
        };
        let table: usize = decoder.table().map(|(n, v)| n.len() + v.len() + 32).sum();
        assert!(table <= 4096, "HPACK table of {table} bytes");
        let mut literal = Vec::new();
        for (name, value) in &fields {
            encode_literal(&mut literal, name, value);
        }
        assert_eq!(Decoder::new(0).decode(&literal), Ok(fields));
    }
});
