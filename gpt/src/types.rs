//! Partition type GUIDs and labels of the Liftoff disk layout (DESIGN.md section 3). The
//! type GUIDs are Bottlerocket's, so its tools and ours read the same disks. This is the one
//! place other crates take them from.

use crate::Guid;

/// EFI system partition (`EFI-SYSTEM`): GRUB and grubenv.
pub const EFI_SYSTEM: Guid = Guid::from_u128(0xc12a7328_f81f_11d2_ba4b_00a0c93ec93b);
/// `BOOT-A` / `BOOT-B`: kernel, initramfs, grub.cfg; carries the A/B attribute bits.
pub const BOOT: Guid = Guid::from_u128(0x6b636168_7420_6568_2070_6c616e657421);
/// `ROOT-A` / `ROOT-B`: read-only root under dm-verity.
pub const ROOT: Guid = Guid::from_u128(0x5526016a_1a97_4ea4_b39a_b7c8c6ca4502);
/// `HASH-A` / `HASH-B`: verity superblock and hash tree.
pub const HASH: Guid = Guid::from_u128(0x598f10af_c955_4456_6a99_7720068a6cea);
/// `PRIVATE`: bootconfig, persistent state, key material.
pub const PRIVATE: Guid = Guid::from_u128(0x440408bb_eb0b_4328_a6e5_a29038fad706);
/// `DATA`: rest of the disk, dm-crypt, mounted at /local.
pub const DATA: Guid = Guid::from_u128(0x626f7474_6c65_6474_6861_726d61726b73);

/// Partition label of the EFI system partition.
pub const LABEL_EFI_SYSTEM: &str = "EFI-SYSTEM";
/// Partition label of slot A's boot partition.
pub const LABEL_BOOT_A: &str = "BOOT-A";
/// Partition label of slot A's root.
pub const LABEL_ROOT_A: &str = "ROOT-A";
/// Partition label of slot A's hash tree.
pub const LABEL_HASH_A: &str = "HASH-A";
/// Partition label of slot B's boot partition.
pub const LABEL_BOOT_B: &str = "BOOT-B";
/// Partition label of slot B's root.
pub const LABEL_ROOT_B: &str = "ROOT-B";
/// Partition label of slot B's hash tree.
pub const LABEL_HASH_B: &str = "HASH-B";
/// Partition label of PRIVATE.
pub const LABEL_PRIVATE: &str = "PRIVATE";
/// Partition label of DATA.
pub const LABEL_DATA: &str = "DATA";

/// The layout in partition-number order: (number, label, type GUID).
pub const LAYOUT: [(u32, &str, Guid); 9] = [
    (1, LABEL_EFI_SYSTEM, EFI_SYSTEM),
    (2, LABEL_BOOT_A, BOOT),
    (3, LABEL_ROOT_A, ROOT),
    (4, LABEL_HASH_A, HASH),
    (5, LABEL_BOOT_B, BOOT),
    (6, LABEL_ROOT_B, ROOT),
    (7, LABEL_HASH_B, HASH),
    (8, LABEL_PRIVATE, PRIVATE),
    (9, LABEL_DATA, DATA),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_matches_design_md() {
        let want = [
            (EFI_SYSTEM, "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"),
            (BOOT, "6b636168-7420-6568-2070-6c616e657421"),
            (ROOT, "5526016a-1a97-4ea4-b39a-b7c8c6ca4502"),
            (HASH, "598f10af-c955-4456-6a99-7720068a6cea"),
            (PRIVATE, "440408bb-eb0b-4328-a6e5-a29038fad706"),
            (DATA, "626f7474-6c65-6474-6861-726d61726b73"),
        ];
        for (g, s) in want {
            assert_eq!(g.to_string(), s);
            assert_eq!(s.parse::<Guid>().unwrap(), g);
        }
    }
}
