//! TPM response codes (TCG TPM 2.0 Library, Part 2 "Structures", section 6.6 "TPM_RC"),
//! decoded into the names the specification and tpm2-tools print.
//!
//! A response code is one of:
//! - format 1 (bit 7 set): an error number (bits 0-5) about a parameter (bit 6 set, number
//!   in bits 8-11), a handle (number in bits 8-10) or a session (bit 11 set, number in
//!   bits 8-10);
//! - format 0 with bit 8 (`RC_VER1`): an error (bit 11 clear) or a warning (bit 11 set);
//! - format 0 without `RC_VER1`: a TPM 1.2 code; bit 10 marks a vendor code;
//! - anything with bits 16 and up set: a code from a software layer (a resource manager),
//!   not from the TPM.

use std::fmt;

/// A TPM_RC as the TPM returned it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseCode(pub u32);

const FMT1: u32 = 0x080;
const VER1: u32 = 0x100;
const WARN: u32 = 0x900;

impl ResponseCode {
    pub const SUCCESS: ResponseCode = ResponseCode(0);
    /// `TPM_RC_POLICY_FAIL`: a policy session's digest does not match the object's
    /// authPolicy (for a PCR policy: the PCRs are not what the object was sealed to).
    pub const POLICY_FAIL: u32 = FMT1 + 0x01D;
    /// `TPM_RC_INTEGRITY`: a private area's integrity check failed (a damaged blob).
    pub const INTEGRITY: u32 = FMT1 + 0x01F;
    /// `TPM_RC_PCR_CHANGED`: a PCR changed while a policy session was being built.
    pub const PCR_CHANGED: u32 = VER1 + 0x028;
    /// `TPM_RC_LOCKOUT`: dictionary-attack lockout.
    pub const LOCKOUT: u32 = WARN + 0x021;

    /// The error without the parameter, handle or session number of format-1 codes: the
    /// value to compare with [`ResponseCode::POLICY_FAIL`] and the other constants.
    pub fn base(self) -> u32 {
        if self.0 & FMT1 != 0 {
            self.0 & (FMT1 | 0x3F)
        } else {
            self.0
        }
    }

    /// The specification's name of the error, if it is one this crate knows.
    pub fn name(self) -> Option<&'static str> {
        let base = self.base();
        if base & FMT1 != 0 {
            FORMAT1
                .iter()
                .find(|(c, _)| *c == base & 0x3F)
                .map(|(_, n)| *n)
        } else {
            FORMAT0.iter().find(|(c, _)| *c == base).map(|(_, n)| *n)
        }
    }
}

/// Format-0 errors and warnings (Part 2, table 16).
const FORMAT0: &[(u32, &str)] = &[
    (VER1, "TPM_RC_INITIALIZE"),
    (VER1 + 0x001, "TPM_RC_FAILURE"),
    (VER1 + 0x003, "TPM_RC_SEQUENCE"),
    (VER1 + 0x00B, "TPM_RC_PRIVATE"),
    (VER1 + 0x019, "TPM_RC_HMAC"),
    (VER1 + 0x020, "TPM_RC_DISABLED"),
    (VER1 + 0x021, "TPM_RC_EXCLUSIVE"),
    (VER1 + 0x024, "TPM_RC_AUTH_TYPE"),
    (VER1 + 0x025, "TPM_RC_AUTH_MISSING"),
    (VER1 + 0x026, "TPM_RC_POLICY"),
    (VER1 + 0x027, "TPM_RC_PCR"),
    (VER1 + 0x028, "TPM_RC_PCR_CHANGED"),
    (VER1 + 0x02D, "TPM_RC_UPGRADE"),
    (VER1 + 0x02E, "TPM_RC_TOO_MANY_CONTEXTS"),
    (VER1 + 0x02F, "TPM_RC_AUTH_UNAVAILABLE"),
    (VER1 + 0x030, "TPM_RC_REBOOT"),
    (VER1 + 0x031, "TPM_RC_UNBALANCED"),
    (VER1 + 0x042, "TPM_RC_COMMAND_SIZE"),
    (VER1 + 0x043, "TPM_RC_COMMAND_CODE"),
    (VER1 + 0x044, "TPM_RC_AUTHSIZE"),
    (VER1 + 0x045, "TPM_RC_AUTH_CONTEXT"),
    (VER1 + 0x046, "TPM_RC_NV_RANGE"),
    (VER1 + 0x047, "TPM_RC_NV_SIZE"),
    (VER1 + 0x048, "TPM_RC_NV_LOCKED"),
    (VER1 + 0x049, "TPM_RC_NV_AUTHORIZATION"),
    (VER1 + 0x04A, "TPM_RC_NV_UNINITIALIZED"),
    (VER1 + 0x04B, "TPM_RC_NV_SPACE"),
    (VER1 + 0x04C, "TPM_RC_NV_DEFINED"),
    (VER1 + 0x050, "TPM_RC_BAD_CONTEXT"),
    (VER1 + 0x051, "TPM_RC_CPHASH"),
    (VER1 + 0x052, "TPM_RC_PARENT"),
    (VER1 + 0x053, "TPM_RC_NEEDS_TEST"),
    (VER1 + 0x054, "TPM_RC_NO_RESULT"),
    (VER1 + 0x055, "TPM_RC_SENSITIVE"),
    (WARN + 0x001, "TPM_RC_CONTEXT_GAP"),
    (WARN + 0x002, "TPM_RC_OBJECT_MEMORY"),
    (WARN + 0x003, "TPM_RC_SESSION_MEMORY"),
    (WARN + 0x004, "TPM_RC_MEMORY"),
    (WARN + 0x005, "TPM_RC_SESSION_HANDLES"),
    (WARN + 0x006, "TPM_RC_OBJECT_HANDLES"),
    (WARN + 0x007, "TPM_RC_LOCALITY"),
    (WARN + 0x008, "TPM_RC_YIELDED"),
    (WARN + 0x009, "TPM_RC_CANCELED"),
    (WARN + 0x00A, "TPM_RC_TESTING"),
    (WARN + 0x020, "TPM_RC_NV_RATE"),
    (WARN + 0x021, "TPM_RC_LOCKOUT"),
    (WARN + 0x022, "TPM_RC_RETRY"),
    (WARN + 0x023, "TPM_RC_NV_UNAVAILABLE"),
];

/// Format-1 error numbers (bits 0-5; Part 2, table 16).
const FORMAT1: &[(u32, &str)] = &[
    (0x001, "TPM_RC_ASYMMETRIC"),
    (0x002, "TPM_RC_ATTRIBUTES"),
    (0x003, "TPM_RC_HASH"),
    (0x004, "TPM_RC_VALUE"),
    (0x005, "TPM_RC_HIERARCHY"),
    (0x007, "TPM_RC_KEY_SIZE"),
    (0x008, "TPM_RC_MGF"),
    (0x009, "TPM_RC_MODE"),
    (0x00A, "TPM_RC_TYPE"),
    (0x00B, "TPM_RC_HANDLE"),
    (0x00C, "TPM_RC_KDF"),
    (0x00D, "TPM_RC_RANGE"),
    (0x00E, "TPM_RC_AUTH_FAIL"),
    (0x00F, "TPM_RC_NONCE"),
    (0x010, "TPM_RC_PP"),
    (0x012, "TPM_RC_SCHEME"),
    (0x015, "TPM_RC_SIZE"),
    (0x016, "TPM_RC_SYMMETRIC"),
    (0x017, "TPM_RC_TAG"),
    (0x018, "TPM_RC_SELECTOR"),
    (0x01A, "TPM_RC_INSUFFICIENT"),
    (0x01B, "TPM_RC_SIGNATURE"),
    (0x01C, "TPM_RC_KEY"),
    (0x01D, "TPM_RC_POLICY_FAIL"),
    (0x01F, "TPM_RC_INTEGRITY"),
    (0x020, "TPM_RC_TICKET"),
    (0x021, "TPM_RC_RESERVED_BITS"),
    (0x022, "TPM_RC_BAD_AUTH"),
    (0x023, "TPM_RC_EXPIRED"),
    (0x024, "TPM_RC_POLICY_CC"),
    (0x025, "TPM_RC_BINDING"),
    (0x026, "TPM_RC_CURVE"),
    (0x027, "TPM_RC_ECC_POINT"),
];

impl fmt::Display for ResponseCode {
    /// `TPM_RC_POLICY_FAIL (session 1) 0x99d`, `TPM_RC_LOCKOUT 0x921`,
    /// `resource manager (layer 11) code 0x0b0001`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rc = self.0;
        if rc >> 16 != 0 {
            return write!(f, "software layer {} code {rc:#08x}", rc >> 16);
        }
        if rc & FMT1 == 0 && rc & VER1 == 0 {
            let what = if rc & 0x400 != 0 { "vendor" } else { "TPM 1.2" };
            return write!(f, "{what} code {rc:#05x}");
        }
        match self.name() {
            Some(n) => f.write_str(n)?,
            None => f.write_str("unknown TPM_RC")?,
        }
        if rc & FMT1 != 0 {
            let n = (rc >> 8) & 0xF;
            if rc & 0x40 != 0 {
                write!(f, " (parameter {n})")?;
            } else if n & 0x8 != 0 {
                write!(f, " (session {})", n & 0x7)?;
            } else if n != 0 {
                write!(f, " (handle {n})")?;
            }
        }
        write!(f, " {rc:#05x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_named_as_the_specification_names_them() {
        let cases = [
            (0x99D, "TPM_RC_POLICY_FAIL (session 1) 0x99d"),
            (0x09D, "TPM_RC_POLICY_FAIL 0x09d"),
            (0x1DF, "TPM_RC_INTEGRITY (parameter 1) 0x1df"),
            (0x18B, "TPM_RC_HANDLE (handle 1) 0x18b"),
            (0x921, "TPM_RC_LOCKOUT 0x921"),
            (0x128, "TPM_RC_PCR_CHANGED 0x128"),
            (0x100, "TPM_RC_INITIALIZE 0x100"),
            (0x902, "TPM_RC_OBJECT_MEMORY 0x902"),
            (0x1FF, "unknown TPM_RC (parameter 1) 0x1ff"),
            (0x0B0001, "software layer 11 code 0x0b0001"),
            (0x401, "vendor code 0x401"),
            (0x010, "TPM 1.2 code 0x010"),
        ];
        for (rc, text) in cases {
            assert_eq!(ResponseCode(rc).to_string(), text, "{rc:#x}");
        }
        assert_eq!(ResponseCode(0x99D).base(), ResponseCode::POLICY_FAIL);
        assert_eq!(ResponseCode(0x1DF).base(), ResponseCode::INTEGRITY);
        assert_eq!(ResponseCode(0x921).base(), ResponseCode::LOCKOUT);
    }
}
