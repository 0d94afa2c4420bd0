//! The device-mapper reply buffer (`dm::wire`), as the kernel hands it back from
//! `/dev/mapper/control`.
//!
//! - `decode_header` and `decode_targets` never panic on any bytes, and never return more
//!   targets than the header counts.
//! - The same bytes as the kernel's answer to every command of `dm::Control` (a double
//!   that writes them over the request buffer, as the ioctl does): version, info, create,
//!   resume and the status loop (which must stop at its 4 MiB limit) never panic, and
//!   their errors name the device.
//! - Round trip: decoded targets, laid out again as a `DM_TABLE_STATUS` reply (each spec
//!   padded to 8 bytes, `next` counted from the data area), decode to the same targets;
//!   a request header written by `encode` decodes to its name, UUID and flags.
#![no_main]

use std::cell::Cell;
use std::io;

use dm::wire::{
    decode_header, decode_targets, encode, Command, Header, Target, DM_IOCTL_SIZE, NAME_LEN,
    TARGET_SPEC_SIZE, TYPE_NAME_LEN, UUID_LEN,
};
use dm::{Control, Ioctl};
use libfuzzer_sys::fuzz_target;

/// A kernel whose every answer is the fuzzer's bytes.
struct Replay<'a> {
    reply: &'a [u8],
    calls: Cell<usize>,
}

impl Ioctl for Replay<'_> {
    fn ioctl(&self, _: Command, buf: &mut [u8]) -> io::Result<()> {
        self.calls.set(self.calls.get() + 1);
        let n = self.reply.len().min(buf.len());
        buf[..n].copy_from_slice(&self.reply[..n]);
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(reply) = decode_header(data) {
        if let Ok(targets) = decode_targets(data, &reply) {
            assert!(targets.len() as u64 <= u64::from(reply.target_count));
            round_trip(&targets);
        }
    }

    let control = Control::with_ioctl(Replay {
        reply: data,
        calls: Cell::new(0),
    });
    let name = "fuzz-dev";
    let named = |e: dm::Error| assert!(e.to_string().contains(name), "{e}");
    let _ = control.version();
    let _ = control.info(name).map_err(named);
    let _ = control.create(name, "uuid").map_err(named);
    let _ = control.resume(name).map_err(named);
    let _ = control.remove(name).map_err(named);
    let before = control.ioctl_impl().calls.get();
    let _ = control.table_status(name).map_err(named);
    // 16 KiB doubled up to 4 MiB: at most nine tries.
    assert!(control.ioctl_impl().calls.get() - before <= 9);

    header_round_trip(data);
});

/// Lays out `targets` as the kernel writes a status reply and decodes it again.
fn round_trip(targets: &[Target]) {
    // Types the kernel could have written: at most 15 bytes, no NUL.
    if targets
        .iter()
        .any(|t| t.target_type.is_empty() || t.target_type.len() >= TYPE_NAME_LEN)
    {
        return;
    }
    let Ok(mut buf) = encode(&Header::default(), &[], 0) else {
        panic!("an empty request encodes");
    };
    let mut data = Vec::new();
    for t in targets {
        let at = data.len();
        let len = (TARGET_SPEC_SIZE + t.params.len() + 1).next_multiple_of(8);
        data.resize(at + len, 0);
        data[at..at + 8].copy_from_slice(&t.start.to_ne_bytes());
        data[at + 8..at + 16].copy_from_slice(&t.length.to_ne_bytes());
        data[at + 20..at + 24].copy_from_slice(&((at + len) as u32).to_ne_bytes());
        data[at + 24..at + 24 + t.target_type.len()].copy_from_slice(t.target_type.as_bytes());
        data[at + 40..at + 40 + t.params.len()].copy_from_slice(t.params.as_bytes());
    }
    buf.extend_from_slice(&data);
    let size = buf.len() as u32;
    buf[12..16].copy_from_slice(&size.to_ne_bytes());
    buf[20..24].copy_from_slice(&(targets.len() as u32).to_ne_bytes());
    let reply = decode_header(&buf).expect("a laid-out reply has a header");
    assert_eq!(decode_targets(&buf, &reply).as_deref(), Ok(targets));
}

/// A request header from the input's first bytes (name, UUID, flags) encodes and decodes
/// to itself, or is refused by `encode` for a reason it names.
fn header_round_trip(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\n');
    let (Some(name), Some(uuid)) = (parts.next(), parts.next()) else {
        return;
    };
    let flags = data.len() as u32;
    let header = Header { name, uuid, flags };
    match encode(&header, &[], DM_IOCTL_SIZE) {
        Ok(buf) => {
            let r = decode_header(&buf).expect("an encoded header decodes");
            assert_eq!(
                (r.name.as_str(), r.uuid.as_str(), r.flags),
                (name, uuid, flags)
            );
        }
        Err(e) => {
            assert!(
                name.len() >= NAME_LEN
                    || uuid.len() >= UUID_LEN
                    || name.contains(['/', '\0'])
                    || uuid.contains('\0'),
                "{e}"
            );
        }
    }
}
