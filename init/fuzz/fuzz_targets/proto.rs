//! Protobuf reading (`liftoff_init::health::proto`) and containerd's `VersionResponse`.
//!
//! `proto_fields` never panics; the fields it returns, encoded again (shortest varints),
//! read back to the same fields; `parse_version` never panics and, when it succeeds,
//! returns the last string of fields 1 and 2.
#![no_main]

use libfuzzer_sys::fuzz_target;
use liftoff_init::health::client::parse_version;
use liftoff_init::health::proto::{proto_fields, ProtoValue};

fuzz_target!(|data: &[u8]| {
    let fields = proto_fields(data);
    if let Ok(fields) = &fields {
        let mut again = Vec::new();
        for (number, value) in fields {
            encode(&mut again, number, value);
        }
        assert_eq!(proto_fields(&again).as_ref(), Ok(fields));
    }
    if let Ok(version) = parse_version(data) {
        let Ok(fields) = fields else {
            panic!("parse_version accepted what proto_fields refused");
        };
        let last = |n: u64| {
            fields
                .iter()
                .filter_map(|(f, v)| match v {
                    ProtoValue::Bytes(b) if *f == n => Some(b.clone()),
                    _ => None,
                })
                .next_back()
                .unwrap_or_default()
        };
        assert_eq!(version.version.as_bytes(), last(1));
        assert_eq!(version.revision.as_bytes(), last(2));
    }
});

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn encode(out: &mut Vec<u8>, number: &u64, value: &ProtoValue) {
    let wire = match value {
        ProtoValue::Varint(_) => 0,
        ProtoValue::Fixed64(_) => 1,
        ProtoValue::Bytes(_) => 2,
        ProtoValue::Fixed32(_) => 5,
    };
    // The key is a varint of (number << 3 | wire type); numbers come from a 64-bit key.
    varint(out, number << 3 | wire);
    match value {
        ProtoValue::Varint(v) => varint(out, *v),
        ProtoValue::Fixed64(v) => out.extend_from_slice(&v.to_le_bytes()),
        ProtoValue::Bytes(b) => {
            varint(out, b.len() as u64);
            out.extend_from_slice(b);
        }
        ProtoValue::Fixed32(v) => out.extend_from_slice(&v.to_le_bytes()),
    }
}
