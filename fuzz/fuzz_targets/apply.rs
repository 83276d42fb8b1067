#![no_main]

//! A raft entry applied to a real store by the state machine.

use std::sync::Mutex;

use libfuzzer_sys::fuzz_target;

static APPLIER: Mutex<Option<kvd::fuzzing::Applier>> = Mutex::new(None);

fuzz_target!(|data: &[u8]| {
    let mut guard = APPLIER.lock().unwrap_or_else(|p| p.into_inner());
    let applier = guard.get_or_insert_with(|| {
        let dir = kvd::fuzzing::scratch_dir("apply");
        kvd::fuzzing::Applier::new(&dir).expect("a fresh store opens")
    });
    let _ = applier.apply(data);
});
