//! containerd's health, as DESIGN.md defines it: "its socket answers a real request".
//!
//! [`version`] connects to containerd's unix socket (`/run/containerd/containerd.sock`,
//! [`CONTAINERD_SOCKET`]), makes the unary gRPC call
//! `/containerd.services.version.v1.Version/Version` with an empty request over HTTP/2
//! ([`super::h2`] has the framing) and returns the version and revision containerd
//! reports. Only a complete answer counts: HTTP status 200, `grpc-status: 0`, exactly one
//! response message that parses. The whole exchange has one deadline: every read and write
//! gets the time that is left, so a containerd that accepts the connection and then hangs
//! costs at most `timeout`.
//!
//! The exchange (one connection, one stream, then the connection is closed):
//!
//! ```text
//! client: preface, SETTINGS(ENABLE_PUSH=0), HEADERS(stream 1, END_HEADERS),
//!         DATA(stream 1, END_STREAM, 00 00000000)
//! server: SETTINGS            -> client: SETTINGS(ACK)
//!         PING                -> client: PING(ACK)
//!         HEADERS(:status 200), DATA(00 len version-message),
//!         HEADERS(grpc-status 0, END_STREAM)
//! ```

use std::fmt;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::h2::{self, flag, kind, FrameHeader, ProtocolError};
use super::hpack;
use super::proto::{self, ProtoValue};

/// containerd's default gRPC socket.
pub const CONTAINERD_SOCKET: &str = "/run/containerd/containerd.sock";
/// The method that answers with containerd's version.
pub const VERSION_METHOD: &str = "/containerd.services.version.v1.Version/Version";

/// What containerd reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// Field 1 of `containerd.services.version.v1.VersionResponse`.
    pub version: String,
    /// Field 2.
    pub revision: String,
}

/// Why the socket gave no valid answer.
#[derive(Debug)]
pub enum Failure {
    Connect(io::Error),
    Write(io::Error),
    Read(io::Error),
    /// The deadline passed.
    TimedOut(Duration),
    /// The server closed the connection before the call ended.
    Closed,
    /// A frame larger than the size we accept.
    FrameTooLarge(usize),
    /// A response body or header block that grew past [`MAX_RESPONSE`] (bytes so far).
    ResponseTooLarge(usize),
    Protocol(ProtocolError),
    /// The server ended the connection.
    GoAway {
        code: u32,
    },
    /// The server reset the stream.
    Reset {
        code: u32,
    },
    /// A HEADERS block without `:status`, or not 200.
    HttpStatus(Option<String>),
    /// The call ended with a gRPC status other than 0 (OK).
    Grpc {
        status: String,
        message: String,
    },
    /// The call ended without a `grpc-status` trailer.
    NoGrpcStatus,
    /// The answer did not hold exactly one message.
    Messages(usize),
    /// A version field that is not UTF-8.
    NotUtf8 {
        field: u64,
    },
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Connect(e) => write!(f, "connecting: {e}"),
            Failure::Write(e) => write!(f, "writing: {e}"),
            Failure::Read(e) => write!(f, "reading: {e}"),
            Failure::TimedOut(t) => write!(f, "no answer within {} ms", t.as_millis()),
            Failure::Closed => f.write_str("the server closed the connection mid-call"),
            Failure::FrameTooLarge(n) => write!(f, "{n}-byte frame (the limit is 16384)"),
            Failure::ResponseTooLarge(n) => write!(
                f,
                "response of {n} bytes or more (the limit is {MAX_RESPONSE})"
            ),
            Failure::Protocol(e) => write!(f, "protocol error: {e}"),
            Failure::GoAway { code } => write!(f, "the server sent GOAWAY (error code {code})"),
            Failure::Reset { code } => write!(f, "the server reset the stream (error code {code})"),
            Failure::HttpStatus(Some(s)) => write!(f, "HTTP status {s}"),
            Failure::HttpStatus(None) => f.write_str("response without :status"),
            Failure::Grpc { status, message } => {
                write!(f, "gRPC status {status}: {message}")
            }
            Failure::NoGrpcStatus => f.write_str("the call ended without grpc-status"),
            Failure::Messages(n) => write!(f, "{n} response messages, expected 1"),
            Failure::NotUtf8 { field } => write!(f, "response field {field} is not UTF-8"),
        }
    }
}

/// A failed health probe, naming the socket.
#[derive(Debug)]
pub struct HealthError {
    pub socket: PathBuf,
    pub failure: Failure,
}

impl fmt::Display for HealthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "asking {} for its version: {}",
            self.socket.display(),
            self.failure
        )
    }
}

impl std::error::Error for HealthError {}

/// Asks the containerd socket at `socket` for its version, within `timeout`.
pub fn version(socket: &Path, timeout: Duration) -> Result<Version, HealthError> {
    let wrap = |failure| HealthError {
        socket: socket.to_owned(),
        failure,
    };
    let answer = call(socket, VERSION_METHOD, b"", timeout).map_err(wrap)?;
    parse_version(&answer).map_err(wrap)
}

/// Makes one unary gRPC call on the unix socket `socket` within `timeout` and returns the
/// response message.
pub fn call(
    socket: &Path,
    method: &str,
    message: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>, Failure> {
    let deadline = Instant::now() + timeout;
    let mut stream = UnixStream::connect(socket).map_err(Failure::Connect)?;
    let mut conn = Conn {
        stream: &mut stream,
        deadline,
        timeout,
    };
    conn.call(method, message)
}

/// The request bytes the client sends first: preface, SETTINGS, HEADERS and DATA.
pub fn request(method: &str, message: &[u8]) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", method),
        (":authority", "localhost"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ] {
        hpack::encode_literal(&mut block, name, value);
    }
    let settings = h2::encode_settings(&[(h2::SETTINGS_ENABLE_PUSH, 0)]);
    [
        h2::PREFACE.to_vec(),
        h2::encode_frame(kind::SETTINGS, 0, 0, &settings),
        h2::encode_frame(kind::HEADERS, flag::END_HEADERS, 1, &block),
        h2::encode_frame(kind::DATA, flag::END_STREAM, 1, &h2::grpc_message(message)),
    ]
    .concat()
}

/// Reads the `VersionResponse` message.
pub fn parse_version(message: &[u8]) -> Result<Version, Failure> {
    let mut v = Version {
        version: String::new(),
        revision: String::new(),
    };
    for (field, value) in proto::proto_fields(message).map_err(Failure::Protocol)? {
        let target = match field {
            1 => &mut v.version,
            2 => &mut v.revision,
            _ => continue,
        };
        if let ProtoValue::Bytes(bytes) = value {
            *target = String::from_utf8(bytes).map_err(|_| Failure::NotUtf8 { field })?;
        }
    }
    Ok(v)
}

/// The most PID 1 keeps of one response's body, or of one header block: a version answer
/// is tens of bytes, and a server that sends more is not spending PID 1's memory.
pub const MAX_RESPONSE: usize = 65_536;

/// Appends `more` to `buf`, or fails once the total would pass [`MAX_RESPONSE`].
fn append_bounded(buf: &mut Vec<u8>, more: &[u8]) -> Result<(), Failure> {
    let total = buf.len().saturating_add(more.len());
    if total > MAX_RESPONSE {
        return Err(Failure::ResponseTooLarge(total));
    }
    buf.extend_from_slice(more);
    Ok(())
}

/// What the response on stream 1 has shown so far.
#[derive(Debug, Default)]
pub struct Response {
    /// Header blocks seen (1: headers, 2: trailers).
    blocks: usize,
    status: Option<String>,
    grpc_status: Option<String>,
    grpc_message: String,
    body: Vec<u8>,
    /// A HEADERS block continues in CONTINUATION frames.
    pending_block: Option<(Vec<u8>, bool)>,
    pub ended: bool,
}

/// Handles one frame from the server; returns the bytes to send back (acknowledgements).
pub fn on_frame(
    header: &FrameHeader,
    payload: &[u8],
    decoder: &mut hpack::Decoder,
    response: &mut Response,
) -> Result<Vec<u8>, Failure> {
    let protocol = Failure::Protocol;
    match header.kind {
        kind::SETTINGS if header.flags & flag::ACK == 0 => {
            if !payload.len().is_multiple_of(6) || header.stream != 0 {
                return Err(protocol(ProtocolError::FrameSize {
                    kind: header.kind,
                    length: payload.len(),
                }));
            }
            return Ok(h2::encode_frame(kind::SETTINGS, flag::ACK, 0, &[]));
        }
        kind::PING if header.flags & flag::ACK == 0 => {
            if payload.len() != 8 {
                return Err(protocol(ProtocolError::FrameSize {
                    kind: header.kind,
                    length: payload.len(),
                }));
            }
            return Ok(h2::encode_frame(kind::PING, flag::ACK, 0, payload));
        }
        kind::GOAWAY => {
            let code = payload
                .get(4..8)
                .and_then(|c| <[u8; 4]>::try_from(c).ok())
                .map_or(0, u32::from_be_bytes);
            return Err(Failure::GoAway { code });
        }
        kind::RST_STREAM if header.stream == 1 => {
            let code = <[u8; 4]>::try_from(payload).map_or(0, u32::from_be_bytes);
            return Err(Failure::Reset { code });
        }
        kind::DATA if header.stream == 1 => {
            let content = h2::frame_content(header, payload).map_err(protocol)?;
            append_bounded(&mut response.body, &content)?;
            if header.flags & flag::END_STREAM != 0 {
                response.ended = true;
            }
        }
        kind::HEADERS if header.stream == 1 => {
            let block = h2::frame_content(header, payload).map_err(protocol)?;
            let end_stream = header.flags & flag::END_STREAM != 0;
            if header.flags & flag::END_HEADERS == 0 {
                response.pending_block = Some((block, end_stream));
            } else {
                header_block(&block, end_stream, decoder, response)?;
            }
        }
        kind::CONTINUATION => {
            if let Some((mut block, end_stream)) = response.pending_block.take() {
                append_bounded(&mut block, payload)?;
                if header.flags & flag::END_HEADERS == 0 {
                    response.pending_block = Some((block, end_stream));
                } else {
                    header_block(&block, end_stream, decoder, response)?;
                }
            }
        }
        // HEADERS of other streams would change the HPACK state; with one stream of ours
        // and push disabled there are none. WINDOW_UPDATE, PRIORITY, acknowledgements and
        // unknown frame types need nothing: the answer is far below every window.
        _ => {}
    }
    Ok(Vec::new())
}

fn header_block(
    block: &[u8],
    end_stream: bool,
    decoder: &mut hpack::Decoder,
    response: &mut Response,
) -> Result<(), Failure> {
    let fields = decoder
        .decode(block)
        .map_err(|e| Failure::Protocol(ProtocolError::Hpack(e)))?;
    response.blocks += 1;
    for (name, value) in fields {
        match name.as_str() {
            ":status" => response.status = Some(value),
            "grpc-status" => response.grpc_status = Some(value),
            "grpc-message" => response.grpc_message = value,
            _ => {}
        }
    }
    if response.blocks == 1 && response.status.as_deref() != Some("200") {
        return Err(Failure::HttpStatus(response.status.clone()));
    }
    if end_stream {
        response.ended = true;
    }
    Ok(())
}

/// The one response message of a call that ended.
pub fn finish(response: &Response) -> Result<Vec<u8>, Failure> {
    match response.grpc_status.as_deref() {
        Some("0") => {}
        Some(other) => {
            return Err(Failure::Grpc {
                status: other.to_owned(),
                message: response.grpc_message.clone(),
            })
        }
        None => return Err(Failure::NoGrpcStatus),
    }
    let mut messages = h2::grpc_messages(&response.body).map_err(Failure::Protocol)?;
    match (messages.pop(), messages.len()) {
        (Some(message), 0) => Ok(message),
        (None, _) => Err(Failure::Messages(0)),
        (Some(_), n) => Err(Failure::Messages(n + 1)),
    }
}

/// A connection with one deadline for everything.
struct Conn<'a, S: Read + Write + Timeouts> {
    stream: &'a mut S,
    deadline: Instant,
    timeout: Duration,
}

/// Per-call timeouts on a stream.
trait Timeouts {
    fn set_timeouts(&self, left: Duration) -> io::Result<()>;
}

impl Timeouts for UnixStream {
    fn set_timeouts(&self, left: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(left))?;
        self.set_write_timeout(Some(left))
    }
}

impl<S: Read + Write + Timeouts> Conn<'_, S> {
    fn left(&self) -> Result<Duration, Failure> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Failure::TimedOut(self.timeout));
        }
        self.stream.set_timeouts(left).map_err(Failure::Read)?;
        Ok(left)
    }

    fn timed(&self, e: io::Error, what: fn(io::Error) -> Failure) -> Failure {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Failure::TimedOut(self.timeout),
            io::ErrorKind::UnexpectedEof => Failure::Closed,
            _ => what(e),
        }
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        self.left()?;
        self.stream
            .write_all(bytes)
            .map_err(|e| self.timed(e, Failure::Write))
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), Failure> {
        self.left()?;
        self.stream
            .read_exact(buf)
            .map_err(|e| self.timed(e, Failure::Read))
    }

    /// Makes a unary call and returns the response message.
    fn call(&mut self, method: &str, message: &[u8]) -> Result<Vec<u8>, Failure> {
        self.send(&request(method, message))?;
        let mut decoder = hpack::Decoder::default();
        let mut response = Response::default();
        while !response.ended {
            let mut head = [0u8; h2::FRAME_HEADER_LEN];
            self.read_exact(&mut head)?;
            let header = FrameHeader::parse(&head);
            if header.length > h2::MAX_FRAME_SIZE {
                return Err(Failure::FrameTooLarge(header.length));
            }
            let mut payload = vec![0u8; header.length];
            self.read_exact(&mut payload)?;
            let reply = on_frame(&header, &payload, &mut decoder, &mut response)?;
            if !reply.is_empty() {
                self.send(&reply)?;
            }
        }
        finish(&response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scripted server: what it sends, and what the client wrote.
    struct Script {
        input: io::Cursor<Vec<u8>>,
        written: Vec<u8>,
    }

    impl Read for Script {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.input.read(buf)
        }
    }

    impl Write for Script {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.written.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Timeouts for Script {
        fn set_timeouts(&self, _: Duration) -> io::Result<()> {
            Ok(())
        }
    }

    fn run(server: &[Vec<u8>]) -> (Result<Vec<u8>, Failure>, Vec<u8>) {
        let mut s = Script {
            input: io::Cursor::new(server.concat()),
            written: Vec::new(),
        };
        let mut conn = Conn {
            stream: &mut s,
            deadline: Instant::now() + Duration::from_secs(5),
            timeout: Duration::from_secs(5),
        };
        let r = conn.call(VERSION_METHOD, b"");
        (r, s.written)
    }

    fn literal_block(fields: &[(&str, &str)]) -> Vec<u8> {
        let mut b = Vec::new();
        for (n, v) in fields {
            hpack::encode_literal(&mut b, n, v);
        }
        b
    }

    fn version_message(version: &str, revision: &str) -> Vec<u8> {
        let mut m = vec![0x0a, version.len() as u8];
        m.extend_from_slice(version.as_bytes());
        m.push(0x12);
        m.push(revision.len() as u8);
        m.extend_from_slice(revision.as_bytes());
        m
    }

    #[test]
    fn request_bytes() {
        let r = request(VERSION_METHOD, b"");
        assert!(r.starts_with(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"));
        let rest = &r[h2::PREFACE.len()..];
        // SETTINGS with ENABLE_PUSH=0.
        assert_eq!(&rest[..15], b"\0\0\x06\x04\0\0\0\0\0\0\x02\0\0\0\0");
        let rest = &rest[15..];
        let h = FrameHeader::parse(rest[..9].try_into().unwrap());
        assert_eq!(
            (h.kind, h.flags, h.stream),
            (kind::HEADERS, flag::END_HEADERS, 1)
        );
        let block = &rest[9..9 + h.length];
        assert_eq!(
            hpack::Decoder::default().decode(block).unwrap(),
            [
                (":method", "POST"),
                (":scheme", "http"),
                (":path", VERSION_METHOD),
                (":authority", "localhost"),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
            ]
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
        );
        assert_eq!(&rest[9 + h.length..], b"\0\0\x05\0\x01\0\0\0\x01\0\0\0\0\0");
    }

    #[test]
    fn scripted_exchanges() {
        let settings = h2::encode_frame(kind::SETTINGS, 0, 0, &[0, 4, 0, 0, 0x40, 0]);
        let ping = h2::encode_frame(kind::PING, 0, 0, b"12345678");
        let headers = |fields: &[(&str, &str)], flags| {
            h2::encode_frame(
                kind::HEADERS,
                flags | flag::END_HEADERS,
                1,
                &literal_block(fields),
            )
        };
        let ok_headers = headers(
            &[(":status", "200"), ("content-type", "application/grpc")],
            0,
        );
        let data = h2::encode_frame(
            kind::DATA,
            0,
            1,
            &h2::grpc_message(&version_message("1.6.20", "rev")),
        );
        let trailers = headers(
            &[("grpc-status", "0"), ("grpc-message", "")],
            flag::END_STREAM,
        );
        let good = version_message("1.6.20", "rev");

        type Case = (&'static str, Vec<Vec<u8>>, Result<Vec<u8>, &'static str>);
        let cases: Vec<Case> = vec![
            (
                "normal call",
                vec![
                    settings.clone(),
                    ok_headers.clone(),
                    data.clone(),
                    trailers.clone(),
                ],
                Ok(good.clone()),
            ),
            (
                "ping and window update in between",
                vec![
                    settings.clone(),
                    ping.clone(),
                    h2::encode_frame(kind::WINDOW_UPDATE, 0, 0, &[0, 0, 0, 10]),
                    ok_headers.clone(),
                    data.clone(),
                    trailers.clone(),
                ],
                Ok(good.clone()),
            ),
            (
                "headers split into CONTINUATION",
                {
                    let block = literal_block(&[(":status", "200")]);
                    vec![
                        h2::encode_frame(kind::HEADERS, 0, 1, &block[..4]),
                        h2::encode_frame(kind::CONTINUATION, flag::END_HEADERS, 1, &block[4..]),
                        data.clone(),
                        trailers.clone(),
                    ]
                },
                Ok(good.clone()),
            ),
            (
                "trailers-only error",
                vec![
                    settings.clone(),
                    headers(
                        &[
                            (":status", "200"),
                            ("grpc-status", "12"),
                            ("grpc-message", "unknown service"),
                        ],
                        flag::END_STREAM,
                    ),
                ],
                Err("gRPC status 12: unknown service"),
            ),
            (
                "HTTP error",
                vec![headers(&[(":status", "404")], flag::END_STREAM)],
                Err("HTTP status 404"),
            ),
            (
                "no grpc-status",
                vec![
                    ok_headers.clone(),
                    h2::encode_frame(kind::DATA, flag::END_STREAM, 1, &h2::grpc_message(&good)),
                ],
                Err("the call ended without grpc-status"),
            ),
            (
                "no message",
                vec![ok_headers.clone(), trailers.clone()],
                Err("0 response messages, expected 1"),
            ),
            (
                "closed mid-call",
                vec![settings.clone(), ok_headers.clone()],
                Err("the server closed the connection mid-call"),
            ),
            (
                "goaway",
                vec![h2::encode_frame(
                    kind::GOAWAY,
                    0,
                    0,
                    &[0, 0, 0, 0, 0, 0, 0, 2],
                )],
                Err("the server sent GOAWAY (error code 2)"),
            ),
            (
                "reset",
                vec![h2::encode_frame(kind::RST_STREAM, 0, 1, &[0, 0, 0, 8])],
                Err("the server reset the stream (error code 8)"),
            ),
            (
                "oversized frame",
                vec![vec![0x01, 0, 0, kind::DATA, 0, 0, 0, 0, 1]],
                Err("65536-byte frame (the limit is 16384)"),
            ),
            (
                "bad settings length",
                vec![h2::encode_frame(kind::SETTINGS, 0, 0, &[0, 4, 0])],
                Err("protocol error: frame of type 4 has a bad length 3"),
            ),
            (
                "a body that never ends",
                std::iter::once(ok_headers.clone())
                    .chain(std::iter::repeat_n(
                        h2::encode_frame(kind::DATA, 0, 1, &[0; 16_384]),
                        5,
                    ))
                    .collect(),
                Err("response of 81920 bytes or more (the limit is 65536)"),
            ),
            (
                "a header block that never ends",
                std::iter::once(h2::encode_frame(kind::HEADERS, 0, 1, &[0x88]))
                    .chain(std::iter::repeat_n(
                        h2::encode_frame(kind::CONTINUATION, 0, 1, &[0; 16_384]),
                        5,
                    ))
                    .collect(),
                Err("response of 65537 bytes or more (the limit is 65536)"),
            ),
        ];
        for (what, server, want) in cases {
            let (got, written) = run(&server);
            match (got, want) {
                (Ok(m), Ok(w)) => assert_eq!(m, w, "{what}"),
                (Err(e), Err(w)) => assert_eq!(e.to_string(), w, "{what}"),
                (got, want) => panic!("{what}: got {got:?}, want {want:?}"),
            }
            // Every SETTINGS is acknowledged and every PING answered with its payload.
            let acks = written
                .windows(9)
                .filter(|w| *w == b"\0\0\0\x04\x01\0\0\0\0")
                .count();
            let settings_seen = server
                .iter()
                .filter(|f| f.get(3) == Some(&kind::SETTINGS))
                .count();
            // A malformed SETTINGS is refused, not acknowledged.
            let malformed = usize::from(what == "bad settings length");
            assert_eq!(
                acks,
                settings_seen - malformed,
                "{what}: SETTINGS acknowledged"
            );
            if server.contains(&ping) {
                let pong = h2::encode_frame(kind::PING, flag::ACK, 0, b"12345678");
                assert!(
                    written.windows(pong.len()).any(|w| w == pong),
                    "{what}: PING answered"
                );
            }
        }
    }

    #[test]
    fn version_message_fields() {
        let v = parse_version(&version_message("v2.0.0", "abc123")).unwrap();
        assert_eq!(
            v,
            Version {
                version: "v2.0.0".into(),
                revision: "abc123".into()
            }
        );
        // Unknown fields are skipped; missing ones stay empty.
        let v = parse_version(&[0x18, 1, 0x0a, 1, b'x']).unwrap();
        assert_eq!((v.version.as_str(), v.revision.as_str()), ("x", ""));
        assert!(matches!(
            parse_version(&[0x0a, 1, 0xff]),
            Err(Failure::NotUtf8 { field: 1 })
        ));
    }

    #[test]
    fn missing_socket_is_a_connect_error_naming_it() {
        let e = version(
            Path::new("/nonexistent/containerd.sock"),
            Duration::from_millis(100),
        )
        .unwrap_err();
        assert!(matches!(e.failure, Failure::Connect(_)));
        assert!(e
            .to_string()
            .starts_with("asking /nonexistent/containerd.sock for its version: connecting: "));
    }

    #[test]
    fn a_silent_server_times_out() {
        let dir = std::env::temp_dir().join(format!("liftoff-health-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let start = Instant::now();
        let e = version(&path, Duration::from_millis(300)).unwrap_err();
        let took = start.elapsed();
        drop(listener);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(matches!(e.failure, Failure::TimedOut(_)), "{e}");
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(2),
            "{took:?}"
        );
    }
}
