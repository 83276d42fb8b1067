//! The fuzz targets of `fuzz/` on the stable toolchain, for CI: every
//! target replays its committed corpus (`fuzz/corpus/<target>/`, which holds
//! the regression inputs of every bug the fuzzers found), then a fixed
//! number of inputs mutated from it by a seeded RNG, through the same
//! entry points (`kvd::fuzzing`). A panic fails the test; so does any
//! single allocation above [`ALLOC_LIMIT`] (a length read from input that
//! was trusted).
//!
//! `cargo test -p kvd --test fuzz_decoders -- --ignored write_seed_corpus`
//! rewrites the generated files of the corpus (`seed-*`, and the
//! `regression-*` inputs that can be generated).

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use kvd::fuzzing;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[path = "fuzz_decoders/seeds.rs"]
mod seeds;

use seeds::{nested_error_response, purge_at_the_last_index, seeds, snap_record};

/// Largest single allocation any decoder may make for these small inputs.
const ALLOC_LIMIT: usize = 64 << 20;

/// Passes through to the system allocator, remembering the largest request
/// above [`ALLOC_LIMIT`]; requests above 1 GiB are refused outright (the
/// process aborts, which fails the test too) so a forged length cannot
/// exhaust the machine before the check runs.
struct Guard;

static BIGGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Guard {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > ALLOC_LIMIT {
            BIGGEST.fetch_max(layout.size(), Ordering::Relaxed);
            if layout.size() > 1 << 30 {
                return std::ptr::null_mut();
            }
        }
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() > ALLOC_LIMIT {
            BIGGEST.fetch_max(layout.size(), Ordering::Relaxed);
            if layout.size() > 1 << 30 {
                return std::ptr::null_mut();
            }
        }
        System.alloc_zeroed(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > ALLOC_LIMIT {
            BIGGEST.fetch_max(new_size, Ordering::Relaxed);
            if new_size > 1 << 30 {
                return std::ptr::null_mut();
            }
        }
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Guard = Guard;

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

/// The committed corpus of `target`, in file name order.
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).expect("corpus file"))
        })
        .collect()
}

/// One mutation of a corpus input: bit flips, byte edits, splices,
/// truncations and boundary length values (as libFuzzer's mutators do).
fn mutate(rng: &mut StdRng, inputs: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut v = inputs[rng.random_range(0..inputs.len())].1.clone();
    for _ in 0..rng.random_range(1..=4) {
        let len = v.len();
        match rng.random_range(0..7) {
            0 if len > 0 => {
                let i = rng.random_range(0..len);
                v[i] ^= 1 << rng.random_range(0..8);
            }
            1 if len > 0 => {
                let i = rng.random_range(0..len);
                v[i] = rng.random();
            }
            2 => {
                let i = rng.random_range(0..=len);
                v.insert(i, rng.random());
            }
            3 if len > 0 => {
                v.remove(rng.random_range(0..len));
            }
            4 => v.truncate(rng.random_range(0..=len)),
            5 => {
                // A boundary value where a length or count may sit.
                let vals: [&[u8]; 5] = [
                    &[0xff, 0xff, 0xff, 0xff],
                    &[0xff; 8],
                    &[0x00, 0x00, 0x00, 0x80],
                    &[0xff, 0xff, 0xff, 0xff, 0x0f],
                    &[0x7f],
                ];
                let val = vals[rng.random_range(0..vals.len())];
                let i = rng.random_range(0..=len);
                let end = (i + val.len()).min(len);
                v.splice(i..end, val.iter().copied());
            }
            _ => {
                let other = &inputs[rng.random_range(0..inputs.len())].1;
                let from = rng.random_range(0..=other.len());
                let at = rng.random_range(0..=len);
                v.truncate(at);
                v.extend_from_slice(&other[from..]);
            }
        }
    }
    v
}

/// Runs the corpus of `target`, then `mutations` mutated inputs, through `f`.
fn replay(target: &str, seed: u64, mutations: usize, mut f: impl FnMut(&[u8])) {
    let inputs = corpus(target);
    assert!(
        inputs.len() >= 3,
        "{target}: the committed corpus is missing"
    );
    let check = |what: &str, data: &[u8]| {
        let big = BIGGEST.swap(0, Ordering::Relaxed);
        assert!(
            big == 0,
            "{target}: {what} made a {big}-byte allocation; input {}",
            hex(data)
        );
    };
    for (name, data) in &inputs {
        f(data);
        check(name, data);
    }
    let mut rng = StdRng::seed_from_u64(seed);
    for i in 0..mutations {
        let data = mutate(&mut rng, &inputs);
        // Printed by the panic message when `f` panics, via the hook below.
        CURRENT.with(|c| *c.borrow_mut() = format!("{target} mutation {i}: {}", hex(&data)));
        f(&data);
        check(&format!("mutation {i}"), &data);
    }
    CURRENT.with(|c| c.borrow_mut().clear());
}

thread_local! {
    static CURRENT: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

fn hex(data: &[u8]) -> String {
    let shown: String = data.iter().take(512).map(|b| format!("{b:02x}")).collect();
    format!("({} bytes) {shown}", data.len())
}

/// Names the mutated input a panic came from (the corpus files have names).
fn on_panic_name_input() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            CURRENT.with(|c| {
                if let Ok(c) = c.try_borrow() {
                    if !c.is_empty() {
                        eprintln!("input: {c}");
                    }
                }
            });
            prev(info)
        }));
    });
}

/// A directory for a store, in memory when /dev/shm exists: the snapshot
/// import commits durably, and an fsync per input would dominate the test.
fn scratch() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    match shm.is_dir() {
        true => tempfile::tempdir_in(shm),
        false => tempfile::tempdir(),
    }
    .expect("tempdir")
}

#[test]
fn client_request_decoders() {
    on_panic_name_input();
    replay("client_request", 1, 20_000, fuzzing::client_request);
}

#[test]
fn apply_decoders() {
    on_panic_name_input();
    let dir = scratch();
    let mut applier = fuzzing::Applier::new(&dir.path().join("apply")).expect("store");
    replay("apply", 2, 600, |d| {
        let _ = applier.apply(d);
    });
}

#[test]
fn snapshot_decoders() {
    on_panic_name_input();
    let dir = scratch();
    let importer = fuzzing::SnapshotImporter::new(&dir.path().join("snap")).expect("store");
    replay("snapshot", 3, 600, |d| {
        let _ = importer.import(d);
    });
}

#[test]
fn mvcc_row_decoders() {
    on_panic_name_input();
    replay("mvcc_row", 4, 20_000, fuzzing::mvcc_row);
}

#[test]
fn wal_decoders() {
    on_panic_name_input();
    replay("wal", 5, 8_000, |d| {
        let _ = fuzzing::wal_segment(d);
    });
}

#[test]
fn peer_message_decoders() {
    on_panic_name_input();
    replay("peer_message", 6, 8_000, fuzzing::peer_message);
}

#[test]
fn hpack_decoders() {
    on_panic_name_input();
    replay("hpack", 7, 5_000, fuzzing::hpack_stream);
}

/// Regression: a WAL purge record naming index u64::MAX overflowed `+ 1`
/// while the log was replayed (a panic at startup instead of an error).
#[test]
fn wal_purge_at_the_last_index_is_corruption_not_a_panic() {
    let seg = purge_at_the_last_index();
    let err = fuzzing::wal_segment(&seg).expect_err("a purge past the last index");
    assert!(err.contains("purge index out of range"), "{err}");
}

/// Writes the generated seeds into `fuzz/corpus/<target>/seed-<name>`.
#[test]
#[ignore = "rewrites the committed seed corpus"]
fn write_seed_corpus() {
    for (target, name, data) in seeds() {
        let dir = corpus_dir(target);
        std::fs::create_dir_all(&dir).unwrap();
        let file = match name.starts_with("regression-") {
            true => name.to_string(),
            false => format!("seed-{name}"),
        };
        std::fs::write(dir.join(file), data).unwrap();
    }
}

/// The generated seeds still decode as what they claim to be (so the
/// corpus exercises the decoders' happy paths, not only their errors).
#[test]
fn seeds_are_valid_inputs() {
    let dir = scratch();
    let importer = fuzzing::SnapshotImporter::new(&dir.path().join("snap")).expect("store");
    let mut applier = fuzzing::Applier::new(&dir.path().join("apply")).expect("store");
    for (target, name, data) in seeds() {
        match target {
            "snapshot" if !name.starts_with("regression-") => importer
                .import(&data)
                .unwrap_or_else(|e| panic!("{name}: {e}")),
            "apply" => applier
                .apply(&data)
                .unwrap_or_else(|e| panic!("{name}: {e}")),
            "wal" if name != "torn-tail" && !name.starts_with("regression-") => {
                let n = fuzzing::wal_segment(&data).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert!(n > 0, "{name}");
            }
            _ => {}
        }
    }
}

/// Regression: a snapshot (or a store file) holding a lease TTL near
/// i64::MAX overflowed the lease deadline (`Instant + ttl`) and panicked
/// when the lessor was restored from it.
#[test]
fn snapshot_with_an_oversized_lease_ttl_is_refused() {
    let dir = scratch();
    let importer = fuzzing::SnapshotImporter::new(&dir.path().join("snap")).expect("store");
    let mut body = Vec::new();
    snap_record(&mut body, 3, &7i64.to_le_bytes(), &i64::MAX.to_le_bytes());
    let err = importer.import(&body).expect_err("refused");
    assert!(err.contains("stored ttl"), "{err}");
    // The largest TTL a grant can store still restores.
    let mut body = Vec::new();
    let max = kvd::lease::MAX_LEASE_TTL;
    snap_record(&mut body, 3, &7i64.to_le_bytes(), &max.to_le_bytes());
    importer.import(&body).expect("the largest granted ttl");
}

/// Regression: a peer's error response nesting `AnyError` sources 100 000
/// deep (1 MB, well under the peer message limit) overflowed the stack of
/// the decoding thread (2 MiB, a tokio worker's) and aborted the process.
#[test]
fn deeply_nested_peer_error_response_is_refused() {
    let msg = nested_error_response(100_000);
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || fuzzing::peer_message(&msg))
        .expect("thread")
        .join()
        .expect("no panic");
}
