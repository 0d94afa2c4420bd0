//! Liftoff's PID 1.
//!
//! The boot is a fixed sequence of stages (DESIGN.md section 1). Each stage is a function
//! that returns a typed error; [`boot::run`] runs them in order, marks each on the timeline
//! and hands any error to the failure policy ([`failure::fail`]), which logs one line and
//! reboots. Pure logic (command line, module metadata, mount plans, log records) lives in
//! its own module and is tested without root; the system calls sit at the edges behind
//! small traits.

#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

pub mod blockdev;
pub mod boot;
pub mod caps;
pub mod data;
pub mod failure;
pub mod grpc;
pub mod health;
pub mod kmsg;
pub mod modules;
pub mod mounts;
pub mod panic;
pub mod root;
pub mod signals;
pub mod slots;
pub mod supervise;
pub mod switch_root;
pub mod timeline;
pub mod watchdog;
