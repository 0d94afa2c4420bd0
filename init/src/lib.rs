//! Liftoff's PID 1.
//!
//! The boot is a fixed sequence of stages (DESIGN.md section 1). Each stage is a function
//! that returns a typed error; [`boot::run`] runs them in order, marks each on the timeline
//! and hands any error to the failure policy ([`infra::failure`]), which logs one line and
//! reboots or, where rebooting cannot help, boots degraded. Pure logic (command line, module metadata, mount plans, log records) lives in
//! its own module and is tested without root; the system calls sit at the edges behind
//! small traits.
//!
//! # Layout
//!
//! | module | owns |
//! |---|---|
//! | [`boot`] | the orchestrator: the stages in boot order, top to bottom |
//! | [`stage`] | one file per boot stage (disk, slots, verity, root, data, ...) and its error |
//! | [`supervise`] | containerd's supervisor: state machine, system interface, loop |
//! | [`health`] | the health client: gRPC over HTTP/2 (framing, HPACK, protobuf) |
//! | [`infra`] | what every stage uses: kmsg logging, timeline, failure policy, panic hook, watchdog |

pub mod boot;
pub mod health;
pub mod infra;
pub mod stage;
pub mod supervise;
