//! containerd's health: "its socket answers a real request" (DESIGN.md section 1).
//!
//! The client ([`client`]: [`version`], [`call`]) makes one unary gRPC call over containerd's
//! unix socket. It stands on three pure decoders of the server's bytes, one protocol each,
//! none of which can panic on any input:
//!
//! - [`h2`]: HTTP/2 frames and gRPC's 5-byte message prefix;
//! - [`hpack`]: header blocks (static and dynamic tables, Huffman strings);
//! - [`proto`]: protobuf fields.

pub mod client;
pub mod h2;
pub mod hpack;
pub mod proto;

pub use client::{call, version, Failure, HealthError, Version, CONTAINERD_SOCKET, VERSION_METHOD};

/// Byte helpers for the tests of the files here.
#[cfg(test)]
mod test_support {
    use super::hpack::Field;

    /// Bytes from hex written in groups, as RFC 7541 prints them.
    pub fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        verity::hex::decode(&s).unwrap()
    }

    pub fn fields(list: &[(&str, &str)]) -> Vec<Field> {
        list.iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::h2::*;
    use super::hpack::*;
    use super::proto::*;
    use super::test_support::hex;

    /// Arbitrary bytes never panic any decoder (debug build: overflow checks on). A small
    /// xorshift generator keeps the run reproducible; the mutations of valid blocks reach
    /// deeper than noise alone.
    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let seeds = [
            hex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff"),
            hex("4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005"),
            vec![
                0x3f, 0xe1, 0x1f, 0x0a, 0x06, b'1', b'.', b'6', 0x12, 0x01, b'x',
            ],
        ];
        for round in 0..20_000 {
            let mut bytes: Vec<u8> = match seeds.get(round % 4) {
                Some(seed) => seed.clone(),
                None => (0..next() % 40).map(|_| next() as u8).collect(),
            };
            for _ in 0..(next() % 4) {
                if !bytes.is_empty() {
                    let i = (next() as usize) % bytes.len();
                    bytes[i] = next() as u8;
                }
            }
            let _ = Decoder::new(256).decode(&bytes);
            let _ = huffman_decode(&bytes);
            let _ = proto_fields(&bytes);
            let _ = grpc_messages(&bytes);
            if bytes.len() >= FRAME_HEADER_LEN {
                let h = FrameHeader::parse(bytes[..FRAME_HEADER_LEN].try_into().unwrap());
                let _ = frame_content(&h, &bytes[FRAME_HEADER_LEN..]);
            }
        }
    }
}
