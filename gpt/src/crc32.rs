//! CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320), the checksum UEFI uses for GPT
//! headers and partition entry arrays.

// Evaluated at compile time only: an out-of-bounds index would fail the build, not panic.
#[allow(clippy::indexing_slicing)]
const fn make_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 == 1 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

static TABLE: [u32; 256] = make_table();

/// CRC-32 of `data` (initial value and final xor 0xFFFFFFFF).
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        let idx = usize::from((crc as u8) ^ b);
        // `idx` is a u8 widened, so it is always < 256.
        let t = TABLE.get(idx).copied().unwrap_or(0);
        crc = t ^ (crc >> 8);
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::crc32;

    #[test]
    fn known_vectors() {
        // Check values from the CRC catalogue (CRC-32/ISO-HDLC) and zlib.
        let cases: &[(&[u8], u32)] = &[
            (b"", 0),
            (b"123456789", 0xCBF4_3926),
            (b"The quick brown fox jumps over the lazy dog", 0x414F_A339),
            (&[0u8; 32], 0x190A_55AD),
        ];
        for (input, want) in cases {
            assert_eq!(crc32(input), *want, "crc32({input:?})");
        }
    }
}
