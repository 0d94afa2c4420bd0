//! aes-xts-plain64 through the kernel's crypto API: `AF_ALG` sockets of type `skcipher`
//! bound to `ecb(aes)` (Documentation/crypto/userspace-if.rst in the kernel).
//!
//! What builds without the `soft-cipher` feature (PID 1) encrypt and decrypt keyslot areas
//! with: the kernel's AES is the accelerated one (AES-NI, the ARMv8 crypto extensions)
//! that dm-crypt uses for the data anyway, and PID 1 carries no AES code of its own.
//! cryptsetup does the same (its `crypto_backend/crypto_cipher_kernel.c`).
//!
//! The kernel needs `CONFIG_CRYPTO_USER_API_SKCIPHER` (Debian: the modules `af_alg` and
//! `algif_skcipher`), `ecb` and `aes`. XTS is made here around the kernel's ECB (IEEE 1619:
//! each 16-byte block is XORed with its tweak before and after the block cipher; a sector's
//! first tweak is its plain64 IV, the sector number little-endian, encrypted with the
//! second half of the key, and each next one that times x in GF(2^128)). So the whole
//! area is a few large requests where the kernel's `xts(aes)` would take one request per
//! 512-byte sector (each with its own IV): 500 of them for a keyslot of a 512-bit key,
//! about 20 ms of PID 1's boot under emulation.

#![allow(unsafe_code)]

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Bytes of an AES block, and of an XTS tweak.
const BLOCK: usize = 16;

/// Bytes per `ecb(aes)` request: well under the socket's default send buffer
/// (`net.core.wmem_default`, 208 KiB), which one request must fit.
const REQUEST: usize = 64 * 1024;

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Says what the kernel lacks when an `AF_ALG` step fails.
fn explain(step: &str, e: io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EAFNOSUPPORT) => format!(
            "{step}: the kernel has no AF_ALG sockets (CONFIG_CRYPTO_USER_API_SKCIPHER; \
             Debian: modules af_alg and algif_skcipher)"
        ),
        Some(libc::ENOENT) => format!(
            "{step}: the kernel's crypto API has no ecb(aes) (CONFIG_CRYPTO_ECB and \
             CONFIG_CRYPTO_AES; Debian: modules ecb and an AES driver)"
        ),
        _ => format!("{step}: {e}"),
    }
}

/// An `AF_ALG` request socket for `ecb(aes)` keyed with `key` (16 or 32 bytes).
fn request_socket(key: &[u8]) -> Result<OwnedFd, String> {
    // SAFETY: socket(2) takes no pointers; the descriptor it returns is new and ours.
    let tfm = unsafe {
        OwnedFd::from_raw_fd(
            check(libc::socket(
                libc::AF_ALG,
                libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
                0,
            ))
            .map_err(|e| explain("AF_ALG socket", e))?,
        )
    };
    // SAFETY: sockaddr_alg is plain integers and byte arrays; all zeros is a valid value.
    let mut addr: libc::sockaddr_alg = unsafe { std::mem::zeroed() };
    addr.salg_family = libc::AF_ALG as libc::sa_family_t;
    for (d, s) in addr.salg_type.iter_mut().zip(b"skcipher") {
        *d = *s;
    }
    for (d, s) in addr.salg_name.iter_mut().zip(b"ecb(aes)") {
        *d = *s;
    }
    // SAFETY: `addr` is a live sockaddr_alg and the length passed is its size.
    check(unsafe {
        libc::bind(
            tfm.as_raw_fd(),
            std::ptr::addr_of!(addr).cast::<libc::sockaddr>(),
            size_of::<libc::sockaddr_alg>() as libc::socklen_t,
        )
    })
    .map_err(|e| explain("binding AF_ALG to skcipher ecb(aes)", e))?;
    let key_len = libc::socklen_t::try_from(key.len()).map_err(|_| "key too long".to_owned())?;
    // SAFETY: the kernel reads `key_len` bytes from `key`, which holds that many; it keeps a
    // copy in the transform, not the pointer.
    check(unsafe {
        libc::setsockopt(
            tfm.as_raw_fd(),
            libc::SOL_ALG,
            libc::ALG_SET_KEY,
            key.as_ptr().cast(),
            key_len,
        )
    })
    .map_err(|e| explain("setting the ecb(aes) key", e))?;
    // SAFETY: accept4 with null address pointers writes nothing back; the descriptor it
    // returns is new and ours. `tfm` may close after: the request socket keeps the key.
    let op = unsafe {
        OwnedFd::from_raw_fd(
            check(libc::accept4(
                tfm.as_raw_fd(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC,
            ))
            .map_err(|e| explain("AF_ALG accept", e))?,
        )
    };
    Ok(op)
}

/// Encrypts or decrypts `buf` in place as aes-xts-plain64 sectors of `sector` bytes, the
/// first one sector number 0. `buf` must be whole sectors (the caller checks).
pub fn xts_plain64(key: &[u8], buf: &mut [u8], sector: usize, encrypt: bool) -> Result<(), String> {
    xts_over_ecb(key, buf, sector, encrypt, ecb)
}

/// XTS as the module docs say, with `ecb(key, data, encrypt)` for the block cipher.
fn xts_over_ecb<E>(
    key: &[u8],
    buf: &mut [u8],
    sector: usize,
    encrypt: bool,
    mut ecb: E,
) -> Result<(), String>
where
    E: FnMut(&[u8], &mut [u8], bool) -> Result<(), String>,
{
    let (k1, k2) = key.split_at(key.len() / 2);
    let mut tweaks = vec![0u8; buf.len().div_ceil(sector.max(1)) * BLOCK];
    for (n, tweak) in tweaks.chunks_mut(BLOCK).enumerate() {
        for (d, s) in tweak.iter_mut().zip((n as u64).to_le_bytes()) {
            *d = s;
        }
    }
    ecb(k2, &mut tweaks, true)?;
    xor_tweaks(buf, sector, &tweaks);
    ecb(k1, buf, encrypt)?;
    xor_tweaks(buf, sector, &tweaks);
    Ok(())
}

/// XORs each block of each `sector`-byte sector of `buf` with its tweak: the sector's
/// first from `tweaks`, each next one the last times x in GF(2^128) (little-endian, the
/// polynomial x^128 + x^7 + x^2 + x + 1).
fn xor_tweaks(buf: &mut [u8], sector: usize, tweaks: &[u8]) {
    let per = (sector / BLOCK).max(1);
    let mut tweak = 0u128;
    for (i, block) in buf.chunks_exact_mut(BLOCK).enumerate() {
        if i % per == 0 {
            let at = i / per * BLOCK;
            let first = tweaks.get(at..at + BLOCK).and_then(|t| t.try_into().ok());
            tweak = u128::from_le_bytes(first.unwrap_or_default());
        }
        let data = u128::from_le_bytes(block.try_into().unwrap_or_default());
        block.copy_from_slice(&(data ^ tweak).to_le_bytes());
        tweak = (tweak << 1) ^ ((tweak >> 127) * 0x87);
    }
}

/// Encrypts or decrypts `buf` (whole blocks) in place with AES-ECB in the kernel.
fn ecb(key: &[u8], buf: &mut [u8], encrypt: bool) -> Result<(), String> {
    let op = request_socket(key)?;
    let direction: u32 = if encrypt {
        libc::ALG_OP_ENCRYPT as u32
    } else {
        libc::ALG_OP_DECRYPT as u32
    };
    // The control message: ALG_SET_OP (a u32), in a buffer aligned for cmsghdr.
    // SAFETY: CMSG_SPACE only computes sizes.
    let space = unsafe { libc::CMSG_SPACE(size_of::<u32>() as u32) } as usize;
    let mut control = [0u64; 4];
    if space > size_of::<[u64; 4]>() {
        return Err(format!("a control message of {space} bytes does not fit"));
    }
    for chunk in buf.chunks_mut(REQUEST) {
        let mut iov = libc::iovec {
            iov_base: chunk.as_mut_ptr().cast(),
            iov_len: chunk.len(),
        };
        // SAFETY: msghdr is plain integers and pointers; all zeros is a valid value.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: `msg` points at `control`, which is at least `space` bytes and aligned
        // for cmsghdr, room for the header and its data (checked above); CMSG_FIRSTHDR
        // stays inside it, and the write is unaligned-safe.
        unsafe {
            let first = libc::CMSG_FIRSTHDR(&msg);
            if first.is_null() {
                return Err("no room for the AF_ALG control message".to_owned());
            }
            (*first).cmsg_level = libc::SOL_ALG;
            (*first).cmsg_type = libc::ALG_SET_OP;
            (*first).cmsg_len = libc::CMSG_LEN(size_of::<u32>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(first).cast::<u32>(), direction);
        }
        // SAFETY: `msg` and everything it points to (`iov` over `chunk`, `control`) live
        // across the call; the kernel only reads them.
        let sent = unsafe { libc::sendmsg(op.as_raw_fd(), &msg, 0) };
        if sent < 0 || sent as usize != chunk.len() {
            return Err(explain("AF_ALG request", io::Error::last_os_error()));
        }
        // SAFETY: read(2) writes at most `chunk.len()` bytes into `chunk`.
        let got = unsafe { libc::read(op.as_raw_fd(), chunk.as_mut_ptr().cast(), chunk.len()) };
        if got < 0 || got as usize != chunk.len() {
            return Err(explain("AF_ALG result", io::Error::last_os_error()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// XTS made around an ECB (here the `aes` crate's, block by block) is the `xts-mode`
    /// crate's, byte for byte: both key sizes, both directions, several sectors, and a
    /// tweak carried out of bit 127 (a sector of 32 blocks shifts each first tweak 31
    /// times).
    #[cfg(feature = "soft-cipher")]
    #[test]
    fn xts_around_ecb_is_xts() {
        use aes::cipher::{generic_array::GenericArray, BlockDecrypt, BlockEncrypt, KeyInit};
        fn each<C: BlockEncrypt + BlockDecrypt>(c: &C, data: &mut [u8], encrypt: bool) {
            for b in data.chunks_mut(BLOCK).map(GenericArray::from_mut_slice) {
                if encrypt {
                    c.encrypt_block(b)
                } else {
                    c.decrypt_block(b)
                }
            }
        }
        fn soft_ecb(key: &[u8], data: &mut [u8], encrypt: bool) -> Result<(), String> {
            match key.len() {
                16 => each(&aes::Aes128::new_from_slice(key).unwrap(), data, encrypt),
                32 => each(&aes::Aes256::new_from_slice(key).unwrap(), data, encrypt),
                n => return Err(format!("no AES key of {n} bytes")),
            }
            Ok(())
        }
        let plain: Vec<u8> = (0..512 * 5u32).map(|i| (i * 13 % 253) as u8).collect();
        for key_len in [32usize, 64] {
            let key: Vec<u8> = (0..key_len as u8)
                .map(|b| b.wrapping_mul(29) ^ 0x5a)
                .collect();
            let mut ours = plain.clone();
            xts_over_ecb(&key, &mut ours, 512, true, soft_ecb).unwrap();
            let mut theirs = plain.clone();
            crate::crypto::area_crypt("aes-xts-plain64", &key, &mut theirs, true).unwrap();
            assert_eq!(ours, theirs, "{key_len}-byte key");
            xts_over_ecb(&key, &mut ours, 512, false, soft_ecb).unwrap();
            assert_eq!(ours, plain, "{key_len}-byte key");
        }
        // A tweak with bit 127 set wraps into 0x87 for the next block.
        let mut blocks = [0u8; BLOCK * 2];
        let mut tweak = [0u8; BLOCK];
        tweak[15] = 0x80;
        xor_tweaks(&mut blocks, BLOCK * 2, &tweak);
        let mut next = [0u8; BLOCK];
        next[0] = 0x87;
        assert_eq!(blocks[..BLOCK], tweak);
        assert_eq!(blocks[BLOCK..], next);
    }

    /// Where the kernel has AF_ALG, XTS around its ecb(aes) and this crate's own (the `soft-cipher`
    /// feature) agree byte for byte; where it has none (this project's build machines),
    /// the error names the kernel option. The guest comparison is the VM tests':
    /// cryptsetup opens the keyslots PID 1 writes through this code.
    #[test]
    fn kernel_xts_agrees_with_the_soft_cipher_or_names_what_is_missing() {
        let key: Vec<u8> = (0..64u8).collect();
        let plain: Vec<u8> = (0..2048u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut ours = plain.clone();
        match xts_plain64(&key, &mut ours, 512, true) {
            Ok(()) => {
                #[cfg(feature = "soft-cipher")]
                {
                    let mut soft = plain.clone();
                    crate::crypto::area_crypt("aes-xts-plain64", &key, &mut soft, true).unwrap();
                    assert_eq!(ours, soft);
                }
                assert_ne!(ours, plain);
                xts_plain64(&key, &mut ours, 512, false).unwrap();
                assert_eq!(ours, plain);
            }
            Err(e) => assert!(
                e.contains("CONFIG_CRYPTO_USER_API_SKCIPHER") || e.contains("CONFIG_CRYPTO_ECB"),
                "{e}"
            ),
        }
    }
}
