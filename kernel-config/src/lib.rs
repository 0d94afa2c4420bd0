//! Kernel configuration for Liftoff (being split into modules).

mod fragment;

pub use fragment::*;
