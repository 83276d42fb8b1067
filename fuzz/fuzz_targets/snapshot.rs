#![no_main]

//! A snapshot imported into a real store, then everything a restart decodes.

use std::sync::Mutex;

use libfuzzer_sys::fuzz_target;

static IMPORTER: Mutex<Option<kvd::fuzzing::SnapshotImporter>> = Mutex::new(None);

fuzz_target!(|data: &[u8]| {
    let mut guard = IMPORTER.lock().unwrap_or_else(|p| p.into_inner());
    let importer = guard.get_or_insert_with(|| {
        let dir = kvd::fuzzing::scratch_dir("snapshot");
        kvd::fuzzing::SnapshotImporter::new(&dir).expect("a fresh store opens")
    });
    let _ = importer.import(data);
});
