//! Interop with Go programs using etcd's own recipes
//! (go.etcd.io/etcd/client/v3/experimental/recipes, v3.7.3): a small Go
//! driver, built offline from the Go module cache that
//! `scripts/etcd-latest.sh` fills, shares queues, a readers-writer lock
//! and a double barrier with our recipes on one server.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use kv_discovery::Session;
use kv_discovery::recipes::{DoubleBarrier, PriorityQueue, Queue, RwMutex};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

use crate::{Kind, Server, WAIT, on_both, within};

on_both!(
    go_and_rust_share_a_queue,
    go_and_rust_share_a_priority_queue,
    go_and_rust_exclude_each_other_on_a_rwmutex,
    go_and_rust_meet_at_a_double_barrier,
);

/// The etcd release whose recipes the driver uses (the one
/// `scripts/etcd-latest.sh` builds, so its modules are cached).
const ETCD_VERSION: &str = "v3.7.3";

const DRIVER_GO: &str = r#"// Drives etcd's Go recipes against an endpoint, for interop tests.
package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	recipe "go.etcd.io/etcd/client/v3/experimental/recipes"
)

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(2)
	}
}

func main() {
	ep, mode, name, args := os.Args[1], os.Args[2], os.Args[3], os.Args[4:]
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 5 * time.Second})
	must(err)
	defer cli.Close()
	in := bufio.NewScanner(os.Stdin)
	switch mode {
	case "enqueue":
		q := recipe.NewQueue(cli, name)
		for _, v := range args {
			must(q.Enqueue(v))
		}
	case "dequeue":
		q := recipe.NewQueue(cli, name)
		n, _ := strconv.Atoi(args[0])
		for i := 0; i < n; i++ {
			v, err := q.Dequeue()
			must(err)
			fmt.Println("ITEM", v)
		}
	case "pq-enqueue":
		q := recipe.NewPriorityQueue(cli, name)
		for i := 0; i+1 < len(args); i += 2 {
			p, _ := strconv.Atoi(args[i+1])
			must(q.Enqueue(args[i], uint16(p)))
		}
	case "pq-dequeue":
		q := recipe.NewPriorityQueue(cli, name)
		n, _ := strconv.Atoi(args[0])
		for i := 0; i < n; i++ {
			v, err := q.Dequeue()
			must(err)
			fmt.Println("ITEM", v)
		}
	case "write-lock", "read-lock":
		s, err := concurrency.NewSession(cli, concurrency.WithTTL(10))
		must(err)
		m := recipe.NewRWMutex(s, name)
		if mode == "write-lock" {
			must(m.Lock())
		} else {
			must(m.RLock())
		}
		fmt.Println("LOCKED")
		in.Scan() // hold until told
		must(m.Unlock())
		fmt.Println("UNLOCKED")
	case "double-barrier":
		s, err := concurrency.NewSession(cli, concurrency.WithTTL(10))
		must(err)
		n, _ := strconv.Atoi(args[0])
		b := recipe.NewDoubleBarrier(s, name, n)
		must(b.Enter())
		// etcd's WaitEvents returns (nil, nil) when its watch channel
		// closes without the event, so Enter can return before anyone
		// wrote the ready key. That is not entering: wait for the key.
		// (A ready key written too early still shows as ENTERED.)
		for warned := false; ; warned = true {
			r, err := cli.Get(context.Background(), name+"/ready")
			must(err)
			if len(r.Kvs) > 0 {
				break
			}
			if !warned {
				fmt.Fprintln(os.Stderr, "note: Enter returned before the ready key existed; waiting for it")
			}
			time.Sleep(50 * time.Millisecond)
		}
		fmt.Println("ENTERED")
		in.Scan()
		must(b.Leave())
		fmt.Println("LEFT")
	}
}
"#;

/// Builds the Go driver once per test process, into cargo's scratch dir
/// for integration tests (target/tmp), replacing the previous build.
fn driver() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("recipes-go");
        // Sources per process, so concurrent runs never read a half-written file.
        let dir = base.join(format!("src-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("main.go"), DRIVER_GO).unwrap();
        std::fs::write(
            dir.join("go.mod"),
            "module kv.local/recipes-interop\n\ngo 1.23\n",
        )
        .unwrap();
        let go = |args: &[&str]| {
            // Offline: only the module cache, no proxy, no checksum DB.
            let out = std::process::Command::new("go")
                .args(args)
                .current_dir(&dir)
                .env("GOPROXY", "off")
                .env("GOSUMDB", "off")
                .env("GOFLAGS", "-mod=mod")
                .output()
                .expect("go is installed (scripts/etcd-latest.sh needs it too)");
            assert!(
                out.status.success(),
                "go {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        go(&["get", &format!("go.etcd.io/etcd/client/v3@{ETCD_VERSION}")]);
        go(&["build", "-o", "driver", "."]);
        let bin = base.join("driver");
        std::fs::rename(dir.join("driver"), &bin).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        bin
    })
    .clone()
}

/// A running driver: its output lines, and its stdin to let it go on.
struct Go {
    _child: Child,
    lines: mpsc::Receiver<String>,
    stdin: ChildStdin,
}

impl Go {
    async fn start(server: &Server, args: &[&str]) -> Go {
        let bin = tokio::task::spawn_blocking(driver).await.unwrap();
        let mut child = Command::new(bin)
            .arg(server.endpoint())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
        let (tx, lines) = mpsc::channel(64);
        tokio::spawn(async move {
            while let Ok(Some(l)) = out.next_line().await {
                if tx.send(l).await.is_err() {
                    break;
                }
            }
        });
        Go {
            _child: child,
            lines,
            stdin,
        }
    }

    /// Runs the driver to completion; its output lines.
    async fn run(server: &Server, args: &[&str]) -> Vec<String> {
        let mut go = Go::start(server, args).await;
        let mut all = Vec::new();
        while let Some(l) = within("the Go driver", WAIT, go.lines.recv()).await {
            all.push(l);
        }
        let status = within("the Go driver to exit", WAIT, go._child.wait())
            .await
            .unwrap();
        assert!(status.success(), "Go driver {args:?} failed: {all:?}");
        all
    }

    async fn expect(&mut self, line: &str) {
        let got = within(line, WAIT, self.lines.recv()).await;
        assert_eq!(got.as_deref(), Some(line));
    }

    /// Whether the driver printed nothing within a short while.
    async fn silent(&mut self) -> bool {
        match tokio::time::timeout(Duration::from_millis(300), self.lines.recv()).await {
            Err(_) => true,
            Ok(got) => {
                // Shown with the failing assertion: a line, or None when
                // the driver exited (its stderr says why).
                eprintln!("the Go driver was not silent: {got:?}");
                false
            }
        }
    }

    async fn proceed(&mut self) {
        self.stdin.write_all(b"go\n").await.unwrap();
        self.stdin.flush().await.unwrap();
    }
}

fn items(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| format!("ITEM {s}")).collect()
}

async fn go_and_rust_share_a_queue(kind: Kind) {
    let server = Server::start(kind).await;
    let client = server.client().await;
    Go::run(&server, &["enqueue", "gq", "a", "b", "c"]).await;
    let q = Queue::new(&client, "gq");
    for want in ["a", "b", "c"] {
        assert_eq!(q.dequeue().await.unwrap(), want.as_bytes(), "[{kind}]");
    }
    for v in ["x", "y", "z"] {
        q.enqueue(v).await.unwrap();
    }
    let got = Go::run(&server, &["dequeue", "gq", "3"]).await;
    assert_eq!(got, items(&["x", "y", "z"]), "[{kind}]");
}

async fn go_and_rust_share_a_priority_queue(kind: Kind) {
    let server = Server::start(kind).await;
    let client = server.client().await;
    let q = PriorityQueue::new(&client, "gpq");
    q.enqueue("r-7", 7).await.unwrap();
    Go::run(
        &server,
        &["pq-enqueue", "gpq", "g-3", "3", "g-7", "7", "g-0", "0"],
    )
    .await;
    q.enqueue("r-3", 3).await.unwrap();
    // Both sides allocate from one sequence per priority.
    let got = Go::run(&server, &["pq-dequeue", "gpq", "2"]).await;
    assert_eq!(got, items(&["g-0", "g-3"]), "[{kind}]");
    for want in ["r-3", "r-7", "g-7"] {
        assert_eq!(q.dequeue().await.unwrap(), want.as_bytes(), "[{kind}]");
    }
}

async fn go_and_rust_exclude_each_other_on_a_rwmutex(kind: Kind) {
    let server = Server::start(kind).await;
    let client = server.client().await;
    let session = Session::with_ttl(&client, 10).await.unwrap();
    let lock = RwMutex::new(&session, "grw");
    // A Go writer holds: our reader waits.
    let mut go = Go::start(&server, &["write-lock", "grw"]).await;
    go.expect("LOCKED").await;
    let reader = {
        let lock = lock.clone();
        tokio::spawn(async move { lock.read().await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!reader.is_finished(), "[{kind}] read while Go writes");
    go.proceed().await;
    go.expect("UNLOCKED").await;
    let r = within("our reader", WAIT, reader).await.unwrap().unwrap();
    // A Go reader shares with ours; a Go writer waits for ours.
    let mut go_reader = Go::start(&server, &["read-lock", "grw"]).await;
    go_reader.expect("LOCKED").await;
    go_reader.proceed().await;
    go_reader.expect("UNLOCKED").await;
    let mut go_writer = Go::start(&server, &["write-lock", "grw"]).await;
    assert!(go_writer.silent().await, "[{kind}] Go wrote while we read");
    r.unlock().await.unwrap();
    go_writer.expect("LOCKED").await;
    go_writer.proceed().await;
    go_writer.expect("UNLOCKED").await;
    // Our writer holds: a Go reader waits (it looks for `grw/write` keys).
    let w = lock.write().await.unwrap();
    let mut go_reader = Go::start(&server, &["read-lock", "grw"]).await;
    assert!(go_reader.silent().await, "[{kind}] Go read while we wrote");
    w.unlock().await.unwrap();
    go_reader.expect("LOCKED").await;
    go_reader.proceed().await;
    go_reader.expect("UNLOCKED").await;
}

async fn go_and_rust_meet_at_a_double_barrier(kind: Kind) {
    let server = Server::start(kind).await;
    let mut go = Go::start(&server, &["double-barrier", "gdb", "3"]).await;
    let client = server.client().await;
    within("the Go participant's key", WAIT, async {
        let opts = kv_client::GetOptions::new().with_prefix();
        while client
            .get("gdb/waiters/", opts.clone())
            .await
            .unwrap()
            .kvs()
            .is_empty()
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let mut ours = Vec::new();
    for i in 0..2 {
        let client = server.client().await;
        let s = Session::with_ttl(&client, 10).await.unwrap();
        ours.push(tokio::spawn(async move {
            DoubleBarrier::new(&s, "gdb", 3).unwrap().enter().await
        }));
        if i == 0 {
            assert!(go.silent().await, "[{kind}] Go entered before 3 were in");
        }
    }
    go.expect("ENTERED").await;
    let mut leaving = Vec::new();
    for t in ours {
        let inside = within("our participant", WAIT, t).await.unwrap().unwrap();
        leaving.push(tokio::spawn(inside.leave()));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        leaving.iter().all(|t| !t.is_finished()),
        "[{kind}] left while Go is inside"
    );
    go.proceed().await;
    go.expect("LEFT").await;
    for t in leaving {
        within("our participant to leave", WAIT, t)
            .await
            .unwrap()
            .unwrap();
    }
}
