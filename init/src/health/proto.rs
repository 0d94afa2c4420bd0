//! Protobuf messages read field by field ([`proto_fields`]), no schema: containerd's
//! version response has field 1 `version` and field 2 `revision`, both strings. Wire types
//! varint (0), 64-bit (1), length-delimited (2) and 32-bit (5); groups are refused.

use super::h2::ProtocolError;

/// A protobuf field value: wire types varint (0), 64-bit (1), length-delimited (2), 32-bit (5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtoValue {
    Varint(u64),
    Fixed64(u64),
    Bytes(Vec<u8>),
    Fixed32(u32),
}

fn read_varint(bytes: &mut &[u8]) -> Result<u64, ProtocolError> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = bytes
            .split_first()
            .ok_or_else(|| ProtocolError::Protobuf("varint cut short".to_owned()))?;
        *bytes = rest;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(ProtocolError::Protobuf(
        "varint longer than 10 bytes".to_owned(),
    ))
}

/// The (field number, value) pairs of a protobuf message, in order.
pub fn proto_fields(mut bytes: &[u8]) -> Result<Vec<(u64, ProtoValue)>, ProtocolError> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let key = read_varint(&mut bytes)?;
        let field = key >> 3;
        let value = match key & 7 {
            0 => ProtoValue::Varint(read_varint(&mut bytes)?),
            1 => {
                let (v, rest) = bytes
                    .split_first_chunk::<8>()
                    .ok_or_else(|| ProtocolError::Protobuf("64-bit field cut short".to_owned()))?;
                bytes = rest;
                ProtoValue::Fixed64(u64::from_le_bytes(*v))
            }
            2 => {
                let len = usize::try_from(read_varint(&mut bytes)?).unwrap_or(usize::MAX);
                let v = bytes.get(..len).ok_or_else(|| {
                    ProtocolError::Protobuf(format!(
                        "field {field}: {len} bytes, {} left",
                        bytes.len()
                    ))
                })?;
                bytes = bytes.get(len..).unwrap_or_default();
                ProtoValue::Bytes(v.to_vec())
            }
            5 => {
                let (v, rest) = bytes
                    .split_first_chunk::<4>()
                    .ok_or_else(|| ProtocolError::Protobuf("32-bit field cut short".to_owned()))?;
                bytes = rest;
                ProtoValue::Fixed32(u32::from_le_bytes(*v))
            }
            other => {
                return Err(ProtocolError::Protobuf(format!(
                    "field {field} has unknown wire type {other}"
                )))
            }
        };
        out.push((field, value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protobuf_fields() {
        // version = "1.6.20", revision = "abc", then fields of every other wire type.
        let mut msg = vec![0x0a, 6];
        msg.extend_from_slice(b"1.6.20");
        msg.extend_from_slice(&[0x12, 3, b'a', b'b', b'c']);
        msg.extend_from_slice(&[0x18, 0xac, 0x02]); // 3: varint 300
        msg.extend_from_slice(&[0x21, 1, 0, 0, 0, 0, 0, 0, 0]); // 4: fixed64 1
        msg.extend_from_slice(&[0x2d, 2, 0, 0, 0]); // 5: fixed32 2
        assert_eq!(
            proto_fields(&msg).unwrap(),
            [
                (1, ProtoValue::Bytes(b"1.6.20".to_vec())),
                (2, ProtoValue::Bytes(b"abc".to_vec())),
                (3, ProtoValue::Varint(300)),
                (4, ProtoValue::Fixed64(1)),
                (5, ProtoValue::Fixed32(2)),
            ]
        );
        let bad: &[&[u8]] = &[
            &[0x0a, 5, b'a'],
            &[0x0b],
            &[0x18, 0x80],
            &[0x21, 0],
            &[0x2d],
        ];
        for b in bad {
            assert!(proto_fields(b).is_err(), "{b:?}");
        }
    }
}
