//! The `init` binary: Liftoff's PID 1. All logic lives in the library.

fn main() {
    liftoff_init::panic::install();
    liftoff_init::boot::run()
}
