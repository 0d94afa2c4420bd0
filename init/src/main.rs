//! The `init` binary: Liftoff's PID 1. All logic lives in the library.

fn main() {
    liftoff_init::infra::panic::install();
    liftoff_init::boot::run()
}
