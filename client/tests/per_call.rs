//! Per-call transport cost of sequential calls, measured the way the
//! Python and Node bindings drive the client: a two-worker multi-thread
//! runtime, each call `block_on`'d from a thread outside it.
//!
//! Not a pass/fail test (it asserts only that the calls succeed): run by
//! hand against a running server (a release kvd on tmpfs, say):
//!
//! ```sh
//! KV_PER_CALL_ENDPOINT=127.0.0.1:2379 cargo test -p kv-client --release \
//!     --test per_call -- --ignored --nocapture
//! ```
//!
//! It prints wall µs per call, CPU µs per call of the runtime's threads and
//! of the calling thread (from /proc/self/task), and the runtime's context
//! switches per call: each is a hand-off between threads.

use std::time::Instant;

use kv_client::{Client, ClientConfig};

/// CPU ticks (utime + stime) and context switches (voluntary + involuntary)
/// of every thread of this process whose name starts with `prefix`.
fn threads(prefix: &str) -> (u64, u64) {
    let mut ticks = 0;
    let mut switches = 0;
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return (0, 0);
    };
    for task in tasks.flatten() {
        let dir = task.path();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if !name.trim_end().starts_with(prefix) {
            continue;
        }
        let stat = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
        // Fields after the ")" that ends the command name: state is 3rd
        // overall, utime the 14th and stime the 15th.
        let rest: Vec<&str> = stat
            .rsplit_once(')')
            .map_or("", |(_, r)| r)
            .split_whitespace()
            .collect();
        let field = |n: usize| rest.get(n - 3).and_then(|v| v.parse::<u64>().ok());
        ticks += field(14).unwrap_or(0) + field(15).unwrap_or(0);
        let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
        for line in status.lines() {
            if let Some(v) = line
                .strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
            {
                switches += v.trim().parse::<u64>().unwrap_or(0);
            }
        }
    }
    (ticks, switches)
}

/// Microseconds per clock tick (USER_HZ is 100 on Linux).
const TICK_US: f64 = 10_000.0;

#[test]
#[ignore = "a measurement: run by hand, see the module docs"]
fn sequential_calls() {
    let Ok(endpoint) = std::env::var("KV_PER_CALL_ENDPOINT") else {
        eprintln!("set KV_PER_CALL_ENDPOINT");
        return;
    };
    let n: usize = std::env::var("KV_PER_CALL_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("kvrt")
        .enable_all()
        .build()
        .unwrap();
    let client = rt
        .block_on(Client::connect(ClientConfig::new([endpoint])))
        .unwrap();
    std::thread::Builder::new()
        .name("caller".into())
        .spawn(move || {
            let value = vec![b'x'; 128];
            let keys: Vec<String> = (0..n).map(|i| format!("per-call/{i:08}")).collect();
            // Warm up the connection and allocator.
            for k in keys.iter().take(500) {
                rt.block_on(client.put(k.as_str(), value.clone(), None))
                    .unwrap();
            }
            for op in ["put", "get"] {
                let (rt0, sw0) = threads("kvrt");
                let (me0, _) = threads("caller");
                let t0 = Instant::now();
                for k in &keys {
                    if op == "put" {
                        rt.block_on(client.put(k.as_str(), value.clone(), None))
                            .unwrap();
                    } else {
                        rt.block_on(client.get(k.as_str(), None)).unwrap();
                    }
                }
                let wall = t0.elapsed().as_secs_f64() * 1e6 / n as f64;
                let (rt1, sw1) = threads("kvrt");
                let (me1, _) = threads("caller");
                println!(
                    "{op}: {wall:.1} µs/call wall, runtime threads {:.1} µs/call CPU, \
                     caller {:.1} µs/call CPU, runtime context switches {:.2}/call",
                    (rt1 - rt0) as f64 * TICK_US / n as f64,
                    (me1 - me0) as f64 * TICK_US / n as f64,
                    (sw1 - sw0) as f64 / n as f64,
                );
            }
        })
        .unwrap()
        .join()
        .unwrap();
}
