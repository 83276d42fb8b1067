//! `make-mirror`: existing keys are copied and later changes follow, between
//! real servers (kvd to kvd, kvd to etcd 3.4, etcd 3.4 to kvd); SIGINT ends
//! it as it ends etcdctl; its periodic count and its argument errors match
//! etcdctl 3.4's.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Upper bound for anything to show up (not a timing assertion: the test
/// only fails if it never shows up).
const PATIENCE: Duration = Duration::from_secs(60);

fn ctl(server: &Server, args: &[&str]) -> String {
    let out = Command::new(KVCTL)
        .args(["--endpoints", &server.endpoint])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

fn ctl_stdin(server: &Server, args: &[&str], stdin: &str) {
    use std::io::Write;
    let mut child = Command::new(KVCTL)
        .args(["--endpoints", &server.endpoint])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
}

/// Waits until `get PREFIX --prefix` on `server` prints `want`.
fn wait_for(server: &Server, prefix: &str, want: &str) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let got = ctl(server, &["get", prefix, "--prefix"]);
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{prefix}: want {want:?}, got {got:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A running mirror whose stdout lines arrive on a channel.
struct Mirror {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Mirror {
    fn start(bin: &str, src: &Server, args: &[&str], dest: &Server) -> Mirror {
        let mut child = Command::new(bin)
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &src.endpoint, "make-mirror"])
            .args(args)
            .arg(&dest.endpoint)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Mirror { child, lines }
    }

    /// Sends SIGINT and returns the signal that ended the process.
    fn interrupt(mut self) -> Option<i32> {
        use std::os::unix::process::ExitStatusExt;
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGINT).unwrap();
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.signal();
            }
            assert!(Instant::now() < deadline, "make-mirror ignored SIGINT");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn mirror_between(src: &Server, dest: &Server) {
    for (k, v) in [("p/a", "1"), ("p/b", "2"), ("p/c", "3"), ("q/x", "no")] {
        ctl(src, &["put", k, v]);
    }
    let m = Mirror::start(
        KVCTL,
        src,
        &[
            "--prefix",
            "p/",
            "--dest-prefix",
            "m/",
            "--max-txn-ops",
            "2",
        ],
        dest,
    );
    wait_for(dest, "m/", "m/a\n1\nm/b\n2\nm/c\n3\n");
    // Changes while mirroring: a put, a delete, and one revision of five
    // puts and a delete (applied in chunks of --max-txn-ops).
    ctl(src, &["put", "p/d", "4"]);
    ctl(src, &["del", "p/a"]);
    ctl_stdin(
        src,
        &["txn"],
        "\nput p/t1 1\nput p/t2 2\nput p/t3 3\nput p/t4 4\nput p/t5 5\ndel p/b\n\n\n",
    );
    ctl(src, &["put", "q/y", "outside the prefix"]);
    ctl(src, &["put", "p/z", "last"]);
    wait_for(
        dest,
        "m/",
        "m/c\n3\nm/d\n4\nm/t1\n1\nm/t2\n2\nm/t3\n3\nm/t4\n4\nm/t5\n5\nm/z\nlast\n",
    );
    assert_eq!(ctl(dest, &["get", "q/", "--prefix"]), "");
    assert_eq!(ctl(dest, &["get", "p/", "--prefix"]), "");
    // etcdctl has no handler: SIGINT ends it; the same for kvctl.
    assert_eq!(m.interrupt(), Some(Signal::SIGINT as i32));
}

#[test]
fn mirrors_kvd_to_kvd() {
    let kvd = kvd_bin();
    mirror_between(&start(&kvd), &start(&kvd));
}

#[test]
fn mirrors_kvd_to_etcd() {
    mirror_between(&start(&kvd_bin()), &start(std::path::Path::new(ETCD)));
}

#[test]
fn mirrors_etcd_to_kvd() {
    mirror_between(&start(std::path::Path::new(ETCD)), &start(&kvd_bin()));
}

/// `--no-dest-prefix` strips the prefix; `--rev` skips the copy and
/// replays the history from that revision.
#[test]
fn no_dest_prefix_and_rev() {
    let kvd = kvd_bin();
    let (src, dest) = (start(&kvd), start(&kvd));
    ctl(&src, &["put", "p/old", "1"]);
    let rev = ctl(&src, &["-w", "json", "put", "p/new", "2"]);
    let rev = rev
        .split("\"revision\":")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .unwrap()
        .to_string();
    let m = Mirror::start(
        KVCTL,
        &src,
        &[
            "--prefix",
            "p/",
            "--no-dest-prefix",
            &format!("--rev={rev}"),
        ],
        &dest,
    );
    ctl(&src, &["put", "p/later", "3"]);
    wait_for(&dest, "", "later\n3\nnew\n2\n");
    drop(m);
}

/// Both tools print the running count (here the 3 copied keys and 2
/// changes) every 30 seconds, a bare number per line.
#[test]
fn count_every_30s_like_etcdctl() {
    let kvd = kvd_bin();
    let src = start(&kvd);
    let (d1, d2) = (start(&kvd), start(&kvd));
    for k in ["c/1", "c/2", "c/3"] {
        ctl(&src, &["put", k, "v"]);
    }
    let theirs = Mirror::start(ETCDCTL, &src, &["--prefix", "c/"], &d1);
    let ours = Mirror::start(KVCTL, &src, &["--prefix", "c/"], &d2);
    wait_for(&d1, "c/", "c/1\nv\nc/2\nv\nc/3\nv\n");
    wait_for(&d2, "c/", "c/1\nv\nc/2\nv\nc/3\nv\n");
    ctl(&src, &["put", "c/4", "v"]);
    ctl(&src, &["del", "c/1"]);
    let want = "c/2\nv\nc/3\nv\nc/4\nv\n";
    wait_for(&d1, "c/", want);
    wait_for(&d2, "c/", want);
    for m in [&theirs, &ours] {
        // Counts only grow; the line with 5 comes at the first report
        // after the changes were applied.
        let mut last = 0;
        loop {
            let line = m
                .lines
                .recv_timeout(Duration::from_secs(100))
                .expect("a count line");
            let n: i64 = line.parse().unwrap_or_else(|_| panic!("{line:?}"));
            assert!(n >= last && n <= 5, "{n} after {last}");
            last = n;
            if n == 5 {
                break;
            }
        }
    }
}

#[test]
fn argument_errors_match_etcdctl() {
    let etcd = start(std::path::Path::new(ETCD));
    let kvd = start(&kvd_bin());
    let dest = kvd.endpoint.as_str();
    let steps: &[&[&str]] = &[
        &["make-mirror"],
        &["make-mirror", dest, dest],
        &[
            "make-mirror",
            "--dest-prefix",
            "x",
            "--no-dest-prefix",
            dest,
        ],
    ];
    for args in steps {
        let want = run(ETCDCTL, &etcd.endpoint, args, &mut None);
        let got = run(KVCTL, &etcd.endpoint, args, &mut None);
        assert_eq!(got, want);
    }
}
