//! grubenv parser: never panics; a block that parses keeps its size through a set, and the
//! value set is the value read.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prairiedog::grubenv::GrubEnv;

fuzz_target!(|data: &[u8]| {
    let Ok(mut env) = GrubEnv::parse(data) else {
        return;
    };
    let _ = env.entries();
    let _ = (env.slot(), env.pending());
    if env.set("liftoff_slot", "B").is_ok() {
        assert_eq!(env.as_bytes().len(), data.len());
        assert_eq!(env.get("liftoff_slot").as_deref(), Some("B"));
        assert!(GrubEnv::parse(env.as_bytes()).is_ok());
    }
});
