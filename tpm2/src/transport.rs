//! How command bytes reach a TPM and response bytes come back.
//!
//! - [`Device`]: the kernel's character device. `/dev/tpmrm0` (the in-kernel resource
//!   manager, which flushes what a closed file left loaded) is what PID 1 opens; the
//!   protocol is one `write` of a whole command, then one `read` of the whole response
//!   (the driver hands over the response in one piece).
//! - `Socket` (feature `swtpm`, for the host tests): swtpm's data channel
//!   (`swtpm socket --server type=unixio,path=P`), which takes the same raw command bytes
//!   and answers with the raw response, framed only by the size in the response header.
//!   swtpm's control channel (`--ctrl`) is not needed when swtpm is started with
//!   `--flags not-need-init,startup-clear`: it sends TPM2_Startup itself.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;

use crate::error::Error;
#[cfg(feature = "swtpm")]
use crate::wire::HEADER_LEN;
use crate::wire::MAX_RESPONSE;

/// One command out, one response back.
pub trait Transport {
    /// Sends `command` and returns the whole response. A short or oversized response is
    /// the parser's business, not an I/O error.
    fn transact(&mut self, command: &[u8]) -> Result<Vec<u8>, TransportError>;

    /// The name errors use: `/dev/tpmrm0`, `swtpm:/tmp/x/sock`.
    fn name(&self) -> &str;
}

/// Which half of an exchange failed.
#[derive(Debug)]
pub enum TransportError {
    Send(io::Error),
    Receive(io::Error),
}

/// A TPM character device (`/dev/tpmrm0`).
#[derive(Debug)]
pub struct Device {
    file: File,
    name: String,
}

impl Device {
    /// The resource-managed device PID 1 uses.
    pub const RESOURCE_MANAGER: &'static str = "/dev/tpmrm0";

    pub fn open(path: &Path) -> Result<Device, Error> {
        let name = path.display().to_string();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|source| Error::Open {
                device: name.clone(),
                source,
            })?;
        Ok(Device { file, name })
    }
}

impl Transport for Device {
    fn transact(&mut self, command: &[u8]) -> Result<Vec<u8>, TransportError> {
        // The driver takes a command in one write (and refuses a partial one).
        let n = retry(|| self.file.write(command)).map_err(TransportError::Send)?;
        if n != command.len() {
            return Err(TransportError::Send(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("the driver took {n} of {} bytes", command.len()),
            )));
        }
        let mut buf = vec![0u8; MAX_RESPONSE];
        let n = retry(|| self.file.read(&mut buf)).map_err(TransportError::Receive)?;
        buf.truncate(n);
        Ok(buf)
    }

    fn name(&self) -> &str {
        &self.name
    }
}

fn retry<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

/// Reads one response from a byte stream: the 10-byte header, then as many bytes as its
/// size field says (at most [`MAX_RESPONSE`]).
#[cfg(feature = "swtpm")]
fn read_framed(stream: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut tag = [0u8; 2];
    stream.read_exact(&mut tag)?;
    let mut size = [0u8; 4];
    stream.read_exact(&mut size)?;
    let len = usize::try_from(u32::from_be_bytes(size)).unwrap_or(usize::MAX);
    if !(HEADER_LEN..=MAX_RESPONSE).contains(&len) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("response header says {len} bytes"),
        ));
    }
    let mut rest = vec![0u8; len - tag.len() - size.len()];
    stream.read_exact(&mut rest)?;
    let mut buf = Vec::with_capacity(len);
    buf.extend_from_slice(&tag);
    buf.extend_from_slice(&size);
    buf.extend_from_slice(&rest);
    Ok(buf)
}

/// swtpm's data channel on a Unix socket (test transport, feature `swtpm`).
#[cfg(feature = "swtpm")]
#[derive(Debug)]
pub struct Socket {
    stream: std::os::unix::net::UnixStream,
    name: String,
}

#[cfg(feature = "swtpm")]
impl Socket {
    pub fn connect(path: &Path) -> Result<Socket, Error> {
        let name = format!("swtpm:{}", path.display());
        let stream =
            std::os::unix::net::UnixStream::connect(path).map_err(|source| Error::Open {
                device: name.clone(),
                source,
            })?;
        Ok(Socket { stream, name })
    }
}

#[cfg(feature = "swtpm")]
impl Transport for Socket {
    fn transact(&mut self, command: &[u8]) -> Result<Vec<u8>, TransportError> {
        self.stream
            .write_all(command)
            .map_err(TransportError::Send)?;
        read_framed(&mut self.stream).map_err(TransportError::Receive)
    }

    fn name(&self) -> &str {
        &self.name
    }
}
