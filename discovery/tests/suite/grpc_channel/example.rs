//! The greeter example end to end, as the issue describes it: the
//! `greeter_client` example (register + discover + call) run against three
//! `greeter_server` processes, one SIGKILLed mid-run; judged only from the
//! client's output.

use std::collections::BTreeMap;
use std::process::Stdio;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{ChildStdout, Command};

use super::{CONCURRENCY, Greeter, greeter_client_bin};
use crate::{Kind, Server, WAIT, within};

on_both_with_greeters!(example_client_survives_a_killed_instance);

/// Answers read after the kill before the client is stopped: enough for
/// the channel to have dropped the dead instance many times over.
const AFTER_KILL: u64 = 300;

/// One line of the client's output.
#[derive(Debug, PartialEq)]
enum Line {
    Answered(String),
    Failed(String),
    Summary {
        ok: u64,
        failed: u64,
        by: BTreeMap<String, u64>,
    },
}

fn parse(line: &str) -> Line {
    if let Some(rest) = line.strip_prefix("summary ") {
        let mut fields: BTreeMap<&str, &str> = BTreeMap::new();
        for f in rest.split(' ') {
            let (k, v) = f.split_once('=').unwrap_or_else(|| panic!("{line}"));
            fields.insert(k, v);
        }
        let num = |k: &str| {
            fields[k]
                .parse::<u64>()
                .unwrap_or_else(|_| panic!("{line}"))
        };
        let by = fields["by"]
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|p| {
                let (id, n) = p.split_once(':').unwrap_or_else(|| panic!("{line}"));
                (
                    id.to_string(),
                    n.parse().unwrap_or_else(|_| panic!("{line}")),
                )
            })
            .collect();
        return Line::Summary {
            ok: num("ok"),
            failed: num("failed"),
            by,
        };
    }
    let (_, what) = line
        .strip_prefix("call ")
        .and_then(|l| l.split_once(": "))
        .unwrap_or_else(|| panic!("unexpected client line {line:?}"));
    match what.strip_prefix("answered by ") {
        Some(id) => Line::Answered(id.to_string()),
        None => match what.strip_prefix("failed ") {
            Some(why) => Line::Failed(why.to_string()),
            None => panic!("unexpected client line {line:?}"),
        },
    }
}

/// What the client printed so far.
#[derive(Default)]
struct Seen {
    ok: BTreeMap<String, u64>,
    failed: Vec<String>,
}

impl Seen {
    fn of(&self, id: &str) -> u64 {
        self.ok.get(id).copied().unwrap_or(0)
    }
    fn total(&self) -> u64 {
        self.ok.values().sum()
    }
}

/// The client's next line; `None` at its end.
async fn next(lines: &mut Lines<BufReader<ChildStdout>>) -> Option<String> {
    within("a line from greeter_client", WAIT, lines.next_line())
        .await
        .expect("read greeter_client stdout")
}

async fn example_client_survives_a_killed_instance(kind: Kind) {
    let server = Server::start(kind).await;
    let kv = server.endpoint();
    let mut a = Greeter::start(&kv, "a").await;
    let mut b = Greeter::start(&kv, "b").await;
    let mut c = Greeter::start(&kv, "c").await;

    let concurrency = CONCURRENCY.to_string();
    let mut client = Command::new(greeter_client_bin())
        .args(["--endpoints", &kv, "--calls", "0", "--interval-ms", "0"])
        .args(["--concurrency", &concurrency, "--min-instances", "3"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn greeter_client");
    let mut lines = BufReader::new(client.stdout.take().expect("piped")).lines();
    let ready = next(&mut lines).await.expect("greeter_client exited");
    assert_eq!(ready, "ready 3 instances", "[{kind}]");

    // Mid-run: every instance has answered a few calls.
    let mut before = Seen::default();
    while !["a", "b", "c"].iter().all(|id| before.of(id) >= 20) {
        match parse(&next(&mut lines).await.expect("client exited early")) {
            Line::Answered(id) => *before.ok.entry(id).or_default() += 1,
            other => panic!("[{kind}] before the kill: {other:?}"),
        }
    }
    b.kill9().await;

    // The client keeps getting answers, from the two left.
    let mut after = Seen::default();
    while after.total() < AFTER_KILL || after.of("a") < 20 || after.of("c") < 20 {
        match parse(&next(&mut lines).await.expect("client exited early")) {
            Line::Answered(id) => *after.ok.entry(id).or_default() += 1,
            Line::Failed(why) => after.failed.push(why),
            s @ Line::Summary { .. } => panic!("[{kind}] summary before the end: {s:?}"),
        }
        assert!(
            after.failed.len() <= CONCURRENCY,
            "[{kind}] more failures than calls in flight: {:?}",
            after.failed
        );
    }

    // Stopped: the calls in flight finish, then the summary.
    let pid = client.id().expect("client running") as i32;
    kill(Pid::from_raw(pid), Signal::SIGTERM).expect("SIGTERM greeter_client");
    let summary = loop {
        let line = next(&mut lines)
            .await
            .expect("client exited without a summary");
        match parse(&line) {
            Line::Answered(id) => *after.ok.entry(id).or_default() += 1,
            Line::Failed(why) => after.failed.push(why),
            s @ Line::Summary { .. } => break s,
        }
    };
    assert_eq!(
        next(&mut lines).await,
        None,
        "[{kind}] output after the summary"
    );
    let status = within("greeter_client to exit", WAIT, client.wait())
        .await
        .expect("reap greeter_client");
    assert!(status.success(), "[{kind}] greeter_client: {status}");

    eprintln!(
        "[{kind}] before the kill {:?}; after it {:?}, {} failed: {:?}",
        before.ok,
        after.ok,
        after.failed.len(),
        after.failed
    );
    // Only calls in flight to b when it died may fail: at most one per
    // caller.
    assert!(
        after.failed.len() <= CONCURRENCY,
        "[{kind}] {} calls failed: {:?}",
        after.failed.len(),
        after.failed
    );
    // The summary agrees with the lines.
    let mut by = before.ok.clone();
    for (id, n) in &after.ok {
        *by.entry(id.clone()).or_default() += n;
    }
    let want = Line::Summary {
        ok: before.total() + after.total(),
        failed: after.failed.len() as u64,
        by,
    };
    assert_eq!(summary, want, "[{kind}]");

    a.kill9().await;
    c.kill9().await;
}
