//! The power button: what a hypervisor's "stop" (EC2 StopInstances, QEMU
//! `system_powerdown`, a libvirt shutdown) and a server's front panel press. The kernel
//! turns the ACPI power button (x86_64 `button` driver; built in on arm64, where QEMU's
//! `virt` board signals it through ACPI under UEFI) into a key press on an input device,
//! and does nothing else with it: without systemd-logind, nobody shuts the host down
//! unless PID 1 reads the device itself (`evdev`, `/dev/input/event*`).
//!
//! PID 1 opens every input device whose key capabilities include `KEY_POWER`, polls them
//! beside its signalfd, and treats a press like SIGPWR: a clean shutdown, then power off.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

/// `EV_KEY` and `KEY_POWER` of `<linux/input-event-codes.h>`.
const EV_KEY: u16 = 1;
const KEY_POWER: u32 = 116;

/// Bytes of one `struct input_event` on a 64-bit kernel: a `timeval` (two 64-bit
/// fields), then type (u16), code (u16) and value (i32).
pub const EVENT_BYTES: usize = 24;

/// An input device that reports the power key, opened non-blocking.
#[derive(Debug)]
pub struct PowerButton {
    fd: OwnedFd,
    /// `event<N>`, for the log.
    pub name: String,
}

impl AsFd for PowerButton {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl PowerButton {
    /// Whether the events waiting on the device include a press of the power key
    /// (reads what is there; a device with nothing to read gives `false`).
    pub fn pressed(&self) -> bool {
        let mut buf = [0u8; EVENT_BYTES * 16];
        let mut pressed = false;
        while let Ok(n @ 1..) = rustix::io::read(&self.fd, &mut buf) {
            pressed |= buf.get(..n).is_some_and(power_pressed);
        }
        pressed
    }
}

/// The power buttons among the input devices in `<sys>/class/input`, opened from
/// `<dev>/input`. Devices that cannot be read or opened are left out: the host then
/// shuts down on signals only, as before.
pub fn open(sys: &Path, dev: &Path) -> Vec<PowerButton> {
    let Ok(entries) = std::fs::read_dir(sys.join("class/input")) else {
        return Vec::new();
    };
    let mut buttons = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("event") {
            continue;
        }
        let caps = std::fs::read_to_string(entry.path().join("device/capabilities/key"))
            .unwrap_or_default();
        if !has_key(&caps, KEY_POWER) {
            continue;
        }
        let flags =
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::CLOEXEC;
        if let Ok(fd) = rustix::fs::open(
            dev.join("input").join(&name),
            flags,
            rustix::fs::Mode::empty(),
        ) {
            buttons.push(PowerButton { fd, name });
        }
    }
    buttons.sort_by(|a, b| a.name.cmp(&b.name));
    buttons
}

/// Whether key `code` is set in a sysfs capability bitmap: hexadecimal words of the
/// kernel's `long` (64 bits here), the most significant first, leading zero words left
/// out.
pub fn has_key(capabilities: &str, code: u32) -> bool {
    let word = (code / 64) as usize;
    capabilities
        .split_whitespace()
        .rev()
        .nth(word)
        .and_then(|w| u64::from_str_radix(w, 16).ok())
        .is_some_and(|w| w >> (code % 64) & 1 == 1)
}

/// Whether `events` (whole `struct input_event`s) hold a press of the power key.
pub fn power_pressed(events: &[u8]) -> bool {
    events.chunks_exact(EVENT_BYTES).any(|e| {
        let field = |at: usize| e.get(at..at + 2).and_then(|b| <[u8; 2]>::try_from(b).ok());
        let kind = field(16).map(u16::from_ne_bytes);
        let code = field(18).map(u16::from_ne_bytes);
        let value = e
            .get(20..24)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(i32::from_ne_bytes);
        kind == Some(EV_KEY) && code == Some(KEY_POWER as u16) && value == Some(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: u16, code: u16, value: i32) -> Vec<u8> {
        let mut e = vec![0u8; 16];
        e.extend_from_slice(&kind.to_ne_bytes());
        e.extend_from_slice(&code.to_ne_bytes());
        e.extend_from_slice(&value.to_ne_bytes());
        e
    }

    /// Capability bitmaps as the kernel prints them: the ACPI power button ("Power
    /// Button", only KEY_POWER), a keyboard with many keys, and a device without it.
    #[test]
    fn power_key_in_capability_bitmaps() {
        assert!(has_key("10000000000000 0", KEY_POWER));
        assert!(has_key(
            "402000000 3803078f800d001 feffffdfffefffff fffffffffffffffe",
            KEY_POWER
        ));
        assert!(!has_key("0", KEY_POWER));
        assert!(!has_key("", KEY_POWER));
        assert!(!has_key("ffffffffffffffff", KEY_POWER));
        assert!(!has_key("zz 0", KEY_POWER));
        assert!(has_key("1", 0));
        assert!(has_key("8000000000000000 0", 127));
    }

    /// A press is a key event with value 1; the release (0), auto-repeat (2), the
    /// SYN_REPORT after it and other keys are not. Partial events are ignored.
    #[test]
    fn press_of_the_power_key() {
        let press = event(EV_KEY, 116, 1);
        let syn = event(0, 0, 0);
        assert!(power_pressed(&[press.clone(), syn.clone()].concat()));
        assert!(power_pressed(&[syn.clone(), press.clone()].concat()));
        assert!(!power_pressed(&event(EV_KEY, 116, 0)));
        assert!(!power_pressed(&event(EV_KEY, 116, 2)));
        assert!(!power_pressed(&event(EV_KEY, 115, 1)));
        assert!(!power_pressed(&event(4, 116, 1)));
        assert!(!power_pressed(&syn));
        assert!(!power_pressed(&press[..EVENT_BYTES - 1]));
        assert!(!power_pressed(&[]));
    }

    /// A fake sysfs and /dev: only the device with KEY_POWER is opened.
    #[test]
    fn only_devices_with_the_power_key_are_opened() {
        let dir = tempfile::tempdir().unwrap();
        let sys = dir.path().join("sys");
        let dev = dir.path().join("dev");
        for (name, caps) in [
            ("event0", "10000000000000 0"),
            ("event1", "3 0"),
            ("mouse0", "10000000000000 0"),
        ] {
            let caps_dir = sys
                .join("class/input")
                .join(name)
                .join("device/capabilities");
            std::fs::create_dir_all(&caps_dir).unwrap();
            std::fs::write(caps_dir.join("key"), format!("{caps}\n")).unwrap();
            std::fs::create_dir_all(dev.join("input")).unwrap();
            std::fs::write(dev.join("input").join(name), event(EV_KEY, 116, 1)).unwrap();
        }
        let buttons = open(&sys, &dev);
        let names: Vec<&str> = buttons.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["event0"]);
        assert!(buttons[0].pressed());
        assert!(open(&dir.path().join("nothing"), &dev).is_empty());
    }
}
