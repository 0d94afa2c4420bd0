//! The health client's side of an HTTP/2 connection (`liftoff_init::health`): the input is
//! everything containerd's socket sends, read the way the client reads it (9-byte frame
//! headers, payloads of at most 16384 bytes, `on_frame` per frame, `finish` once the
//! stream ended, then the protobuf `VersionResponse`).
//!
//! Nothing panics; every reply the client sends is an acknowledgement (SETTINGS with ACK
//! and no payload, or PING with ACK echoing the 8 bytes); the HPACK dynamic table never
//! grows past the 4096 bytes the client allows; errors print.
#![no_main]

use libfuzzer_sys::fuzz_target;
use liftoff_init::health::client::{finish, on_frame, parse_version, Response};
use liftoff_init::health::h2::{flag, kind, FrameHeader, FRAME_HEADER_LEN, MAX_FRAME_SIZE};
use liftoff_init::health::hpack::Decoder;

fuzz_target!(|data: &[u8]| {
    let mut input = data;
    let mut decoder = Decoder::default();
    let mut response = Response::default();
    while !response.ended {
        let Some((head, rest)) = input.split_first_chunk::<FRAME_HEADER_LEN>() else {
            return; // the server closed the connection mid-call
        };
        let header = FrameHeader::parse(head);
        if header.length > MAX_FRAME_SIZE {
            return; // refused as too large before reading it
        }
        let Some((payload, rest)) = rest.split_at_checked(header.length) else {
            return;
        };
        input = rest;
        match on_frame(&header, payload, &mut decoder, &mut response) {
            Ok(reply) => check_reply(&reply, payload),
            Err(e) => {
                let _ = e.to_string();
                return;
            }
        }
        let table: usize = decoder.table().map(|(n, v)| n.len() + v.len() + 32).sum();
        assert!(table <= 4096, "HPACK table of {table} bytes");
    }
    match finish(&response) {
        Ok(message) => match parse_version(&message) {
            Ok(v) => {
                let _ = (v.version.len(), v.revision.len());
            }
            Err(e) => {
                let _ = e.to_string();
            }
        },
        Err(e) => {
            let _ = e.to_string();
        }
    }
});

fn check_reply(reply: &[u8], payload: &[u8]) {
    if reply.is_empty() {
        return;
    }
    let (head, body) = reply
        .split_first_chunk::<FRAME_HEADER_LEN>()
        .expect("a reply is a whole frame");
    let h = FrameHeader::parse(head);
    assert_eq!((h.length, h.flags, h.stream), (body.len(), flag::ACK, 0));
    match h.kind {
        kind::SETTINGS => assert!(body.is_empty()),
        kind::PING => assert_eq!(body, payload),
        other => panic!("the client answered with a frame of type {other}"),
    }
}
