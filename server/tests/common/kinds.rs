//! Which servers a test runs against (kvd, Debian's etcd 3.4, the newest
//! etcd) and how their transcripts are compared.

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;

use futures::FutureExt;

use super::{Options, BODY_TIMEOUT, ETCD_BIN};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Kvd,
    Etcd,
}

#[allow(unused_imports)]
pub use Kind::{Etcd, Kvd};

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::Kvd => write!(f, "kvd"),
            Kind::Etcd => write!(f, "etcd"),
        }
    }
}

impl Kind {
    pub fn binary(self) -> PathBuf {
        match self {
            Kind::Kvd => PathBuf::from(env!("CARGO_BIN_EXE_kvd")),
            Kind::Etcd => PathBuf::from(ETCD_BIN),
        }
    }

    /// Whether `KV_TEST_ONLY` allows running against this kind.
    pub fn enabled(self) -> bool {
        kinds().contains(&self)
    }
}

/// The kinds this run covers, in order: kvd then etcd by default.
/// `KV_TEST_ONLY` is a comma-separated list (`etcd`, `kvd`, or e.g.
/// `etcd,etcd` to run etcd twice and check the suite's transcripts are
/// deterministic).
pub fn kinds() -> Vec<Kind> {
    match std::env::var("KV_TEST_ONLY") {
        Ok(only) if !only.trim().is_empty() => only
            .split(',')
            .map(|k| match k.trim().to_ascii_lowercase().as_str() {
                "kvd" => Kind::Kvd,
                "etcd" => Kind::Etcd,
                other => panic!("KV_TEST_ONLY: unknown kind {other:?} (use kvd or etcd)"),
            })
            .collect(),
        _ => vec![Kind::Kvd, Kind::Etcd],
    }
}

/// Runs `body` once per enabled kind (kvd, then etcd), each with a time
/// limit. The body returns a transcript of observations that must not differ
/// between kvd and etcd; when both ran, the transcripts are compared (the
/// later ones against the first).
pub async fn each_kind<F, Fut>(body: F)
where
    F: Fn(Kind) -> Fut,
    Fut: Future<Output = Vec<String>>,
{
    let mut transcripts: Vec<(Kind, Vec<String>)> = Vec::new();
    for kind in kinds() {
        eprintln!("=== running against {kind}");
        let run = AssertUnwindSafe(tokio::time::timeout(BODY_TIMEOUT, body(kind)));
        let transcript = match run.catch_unwind().await {
            Ok(Ok(t)) => t,
            Ok(Err(_)) => panic!("[{kind}] test body did not finish within {BODY_TIMEOUT:?}"),
            Err(panic) => {
                eprintln!("*** the test body failed against {kind}");
                std::panic::resume_unwind(panic)
            }
        };
        transcripts.push((kind, transcript));
    }
    if transcripts.is_empty() {
        eprintln!("no kind enabled by KV_TEST_ONLY; nothing ran");
        return;
    }
    if let [(k1, t1), rest @ ..] = &transcripts[..] {
        for (k2, t2) in rest {
            compare_transcripts(*k1, t1, *k2, t2);
        }
    }
}

/// Asserts two transcripts are equal, reporting the first difference.
pub fn compare_transcripts(k1: Kind, t1: &[String], k2: Kind, t2: &[String]) {
    for (i, (a, b)) in t1.iter().zip(t2.iter()).enumerate() {
        assert_eq!(
            a, b,
            "transcripts differ at step {i}:\n  {k1}: {a}\n  {k2}: {b}"
        );
    }
    assert_eq!(
        t1.len(),
        t2.len(),
        "transcripts have different lengths: {k1}: {t1:?}\n{k2}: {t2:?}"
    );
}

/// Runs a kvd-only body (skipped when `KV_TEST_ONLY` excludes kvd).
pub async fn kvd_only<F, Fut>(body: F)
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ()>,
{
    if !Kind::Kvd.enabled() {
        eprintln!("kvd-only test skipped by KV_TEST_ONLY");
        return;
    }
    if tokio::time::timeout(BODY_TIMEOUT, body()).await.is_err() {
        panic!("[kvd] test body did not finish within {BODY_TIMEOUT:?}");
    }
}

/// Runs `run` against etcd 3.4 and, when built, the newest etcd, and
/// compares each transcript with kvd's (unless KV_TEST_ONLY leaves etcd out).
#[allow(dead_code)]
pub async fn compare_with_etcds<F, Fut>(kvd: &[String], run: F)
where
    F: Fn(Kind, Options) -> Fut,
    Fut: Future<Output = Vec<String>>,
{
    if !Kind::Etcd.enabled() {
        return;
    }
    let etcd = run(Kind::Etcd, Options::default()).await;
    compare_transcripts(Kind::Kvd, kvd, Kind::Etcd, &etcd);
    if let Some(latest) = etcd_latest() {
        let etcd = run(Kind::Etcd, Options::default().binary(latest)).await;
        compare_transcripts(Kind::Kvd, kvd, Kind::Etcd, &etcd);
    }
}

/// The newest etcd, where scripts/etcd-latest.sh left its build (None if it
/// was not built, or KV_TEST_ONLY leaves etcd out).
#[allow(dead_code)]
pub fn etcd_latest() -> Option<PathBuf> {
    let p = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../.cache/etcd-v3.7.3/etcd"
    ));
    (p.exists() && Kind::Etcd.enabled()).then_some(p)
}
