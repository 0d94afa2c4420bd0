//! Values derived from the build's seed, so the same inputs give the same bytes: every GUID,
//! file system UUID, ext4 hash seed and FAT volume ID, and the verity salt and UUID.

use sha2::{Digest, Sha256};

/// A GUID derived from the seed and a label (version 4 layout bits set).
pub fn seeded_guid(seed: &str, label: &str) -> String {
    let d: [u8; 32] = Sha256::digest(format!("{seed}/{label}").as_bytes()).into();
    let [b @ .., _, _, _, _, _, _, _, _, _, _, _, _, _, _, _, _] = d;
    let mut b: [u8; 16] = b;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
        b[14], b[15]
    )
}

/// Seeded bytes for salts.
pub fn seeded_bytes(seed: &str, label: &str, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut counter = 0u32;
    while out.len() < len {
        let d = Sha256::digest(format!("{seed}/{label}/{counter}").as_bytes());
        out.extend_from_slice(&d);
        counter += 1;
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_values_are_stable_and_distinct() {
        let a = seeded_guid("s", "ROOT-A");
        assert_eq!(a, seeded_guid("s", "ROOT-A"));
        assert_ne!(a, seeded_guid("s", "ROOT-B"));
        assert_ne!(a, seeded_guid("t", "ROOT-A"));
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert_eq!(seeded_bytes("s", "x", 40).len(), 40);
        assert_eq!(
            seeded_bytes("s", "x", 40)[..32],
            seeded_bytes("s", "x", 32)[..]
        );
    }
}
