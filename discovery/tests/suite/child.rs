//! Participant processes for the killed-participant tests: a test runs
//! this test binary again with only one `#[ignore]`d child test, reads the
//! lines the child prints (`<TAG> <payload>`), and SIGKILLs it, so no
//! destructor, unlock or lease revoke runs in the child: only the expiry
//! of its session's lease removes what it held.
//!
//! A child test calls [`role`] first and returns at once when it is `None`
//! (run by hand with `--ignored`, not by a parent).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use kv_client::{Client, GetOptions, SortOrder, SortTarget};
use kv_discovery::Session;
use tokio::sync::mpsc;

use crate::{WAIT, fast_config, within};

/// Env var with the server endpoint the child connects to.
const ENDPOINT_ENV: &str = "KV_RECIPES_CHILD_ENDPOINT";
/// Env var with the child's argument (what to do, which names).
const ARG_ENV: &str = "KV_RECIPES_CHILD_ARG";

/// The TTL of a child's session: short, so tests wait little for expiry.
pub const CHILD_TTL: i64 = 2;

/// A running child process; killed (and reaped) when dropped, so a failed
/// assertion in the parent does not leave it behind.
pub struct Child {
    process: std::process::Child,
    /// The child's stdout lines, read by a thread (std pipes block).
    lines: mpsc::Receiver<String>,
}

impl Child {
    /// Runs this test binary again with only `test` (the full path of an
    /// ignored child test, e.g. `recipes_sync::rwmutex_child`), passing it
    /// `endpoint` and `arg`.
    pub fn spawn(test: &str, endpoint: &str, arg: &str) -> Child {
        let exe = std::env::current_exe().expect("the test binary's path");
        let mut process = Command::new(exe)
            .args([
                test,
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ENDPOINT_ENV, endpoint)
            .env(ARG_ENV, arg)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the child process");
        let stdout = process.stdout.take().expect("the child's piped stdout");
        let (tx, lines) = mpsc::channel(16);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.blocking_send(line).is_err() {
                    break;
                }
            }
        });
        Child { process, lines }
    }

    /// Waits for the child's next line tagged `tag` and returns its
    /// payload; fails the test if the child exits first.
    pub async fn expect(&mut self, tag: &str) -> String {
        let marker = format!("{tag} ");
        let (lines, process) = (&mut self.lines, &mut self.process);
        within(&format!("the child to say {tag}"), WAIT, async {
            loop {
                let Some(line) = lines.recv().await else {
                    panic!("the child exited before saying {tag}: {:?}", process.wait());
                };
                // libtest may print the test's name on the same line first.
                if let Some((_, payload)) = line.split_once(&marker) {
                    return payload.to_string();
                }
            }
        })
        .await
    }

    /// SIGKILLs the child and reaps it.
    pub fn kill(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill();
    }
}

/// In a child test: the endpoint and argument its parent passed, `None`
/// when there is no parent.
pub fn role() -> Option<(String, String)> {
    let endpoint = std::env::var(ENDPOINT_ENV).ok()?;
    let arg = std::env::var(ARG_ENV).unwrap_or_default();
    Some((endpoint, arg))
}

/// In a child test: a client and a session of [`CHILD_TTL`] seconds.
pub async fn session(endpoint: &str) -> Session {
    let client = Client::connect(fast_config(endpoint)).await.unwrap();
    Session::with_ttl(&client, CHILD_TTL).await.unwrap()
}

/// In a child test: tells the parent `<tag> <payload>`.
pub fn say(tag: &str, payload: &str) {
    println!("{tag} {payload}");
}

/// In a child test: waits to be killed (bounded, in case the parent
/// vanished without killing it).
pub async fn hold() {
    tokio::time::sleep(Duration::from_secs(120)).await;
}

/// Whether `key` exists now.
pub async fn exists(client: &Client, key: &str) -> bool {
    !client.get(key, None).await.unwrap().kvs().is_empty()
}

/// Waits until `prefix` has exactly `n` keys; returns them, oldest
/// (create revision) first.
pub async fn keys_under(client: &Client, prefix: &str, n: usize) -> Vec<String> {
    let opts = GetOptions::new()
        .with_prefix()
        .with_keys_only()
        .with_sort(SortTarget::Create, SortOrder::Ascend);
    within(&format!("{n} keys under {prefix}"), WAIT, async {
        loop {
            let r = client.get(prefix, opts.clone()).await.unwrap();
            if r.kvs().len() == n {
                return r
                    .kvs()
                    .iter()
                    .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
                    .collect();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}
