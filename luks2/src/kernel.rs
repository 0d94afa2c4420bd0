//! aes-xts-plain64 through the kernel's crypto API: an `AF_ALG` socket of type `skcipher`
//! bound to `xts(aes)` (Documentation/crypto/userspace-if.rst in the kernel).
//!
//! What builds without the `soft-cipher` feature (PID 1) encrypt and decrypt keyslot areas
//! with: the kernel's AES is the accelerated one (AES-NI, the ARMv8 crypto extensions)
//! that dm-crypt uses for the data anyway, and PID 1 carries no AES code of its own.
//! cryptsetup does the same (its `crypto_backend/crypto_cipher_kernel.c`).
//!
//! The kernel needs `CONFIG_CRYPTO_USER_API_SKCIPHER` (Debian: the modules `af_alg` and
//! `algif_skcipher`) and `xts` and `aes`. Each 512-byte sector is one request with its own
//! IV (plain64: the sector number, little-endian, zero-padded to 16 bytes), as dm-crypt and
//! cryptsetup process keyslot areas.

#![allow(unsafe_code)]

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Bytes of an XTS IV.
const IV_LEN: usize = 16;

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
            "{step}: the kernel's crypto API has no xts(aes) (CONFIG_CRYPTO_XTS and \
             CONFIG_CRYPTO_AES; Debian: modules xts and an AES driver)"
        ),
        _ => format!("{step}: {e}"),
    }
}

/// An `AF_ALG` request socket for `xts(aes)` keyed with `key` (32 or 64 bytes).
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
    for (d, s) in addr.salg_name.iter_mut().zip(b"xts(aes)") {
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
    .map_err(|e| explain("binding AF_ALG to skcipher xts(aes)", e))?;
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
    .map_err(|e| explain("setting the xts(aes) key", e))?;
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
    let op = request_socket(key)?;
    let direction: u32 = if encrypt {
        libc::ALG_OP_ENCRYPT as u32
    } else {
        libc::ALG_OP_DECRYPT as u32
    };
    // The control messages: ALG_SET_OP (a u32) and ALG_SET_IV (struct af_alg_iv: a u32
    // length and the IV), in a buffer aligned for cmsghdr.
    // SAFETY: CMSG_SPACE only computes sizes.
    let space = unsafe {
        libc::CMSG_SPACE(size_of::<u32>() as u32)
            + libc::CMSG_SPACE((size_of::<u32>() + IV_LEN) as u32)
    } as usize;
    let mut control = [0u64; 16];
    if space > size_of::<[u64; 16]>() {
        return Err(format!("control messages of {space} bytes do not fit"));
    }
    for (n, chunk) in buf.chunks_mut(sector).enumerate() {
        let mut iv = [0u8; size_of::<u32>() + IV_LEN];
        let (len, value) = iv.split_at_mut(size_of::<u32>());
        len.copy_from_slice(&(IV_LEN as u32).to_ne_bytes());
        for (d, s) in value.iter_mut().zip((n as u64).to_le_bytes()) {
            *d = s;
        }
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
        // for cmsghdr, room for both headers and their data (checked above); CMSG_FIRSTHDR
        // and CMSG_NXTHDR stay inside it, and the writes are unaligned-safe.
        unsafe {
            let first = libc::CMSG_FIRSTHDR(&msg);
            if first.is_null() {
                return Err("no room for the AF_ALG control messages".to_owned());
            }
            (*first).cmsg_level = libc::SOL_ALG;
            (*first).cmsg_type = libc::ALG_SET_OP;
            (*first).cmsg_len = libc::CMSG_LEN(size_of::<u32>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(first).cast::<u32>(), direction);
            let second = libc::CMSG_NXTHDR(&msg, first);
            if second.is_null() {
                return Err("no room for the AF_ALG IV".to_owned());
            }
            (*second).cmsg_level = libc::SOL_ALG;
            (*second).cmsg_type = libc::ALG_SET_IV;
            (*second).cmsg_len = libc::CMSG_LEN(iv.len() as u32) as _;
            std::ptr::copy_nonoverlapping(iv.as_ptr(), libc::CMSG_DATA(second), iv.len());
        }
        // SAFETY: `msg` and everything it points to (`iov` over `chunk`, `control`) live
        // across the call; the kernel only reads them.
        let sent = unsafe { libc::sendmsg(op.as_raw_fd(), &msg, 0) };
        if sent < 0 || sent as usize != chunk.len() {
            return Err(explain(
                &format!("AF_ALG request for sector {n}"),
                io::Error::last_os_error(),
            ));
        }
        // SAFETY: read(2) writes at most `chunk.len()` bytes into `chunk`.
        let got = unsafe { libc::read(op.as_raw_fd(), chunk.as_mut_ptr().cast(), chunk.len()) };
        if got < 0 || got as usize != chunk.len() {
            return Err(explain(
                &format!("AF_ALG result for sector {n}"),
                io::Error::last_os_error(),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where the kernel has AF_ALG, its xts(aes) and this crate's own (the `soft-cipher`
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
                e.contains("CONFIG_CRYPTO_USER_API_SKCIPHER") || e.contains("CONFIG_CRYPTO_XTS"),
                "{e}"
            ),
        }
    }
}
