//! kvd's log flags on a real process: JSON lines to a file named by
//! --log-outputs, shaped as etcd 3.7.3's zap lines (checked on a real etcd
//! where it is built), with the start-up banner, etcd's "slow fdatasync" warning
//! on a slow disk (the `wal-fsync=sleep(N)` test hook), the shutdown lines;
//! and etcd's refusals of log flags it does not take.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::cluster::free_port;
use common::{kvd_only, wait_until, Kind, WAIT_TIMEOUT};
use etcd_client::{Client, ConnectOptions};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The JSON objects in `path`, one a line; panics on a line that is not one.
fn json_lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn with_message<'a>(lines: &'a [serde_json::Value], msg: &str) -> Vec<&'a serde_json::Value> {
    lines.iter().filter(|l| l["msg"] == msg).collect()
}

/// Whether `line` is shaped as zap writes etcd's lines: `level`, `ts`,
/// `caller`, `msg` first and in that order, zap's level names, RFC 3339 UTC
/// timestamps with microseconds, a `dir/file:line` caller; then fields.
fn zap_shape(line: &str) -> Result<(), String> {
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("{e}: {line}"))?;
    let text = |k: &str| {
        v[k].as_str()
            .map(str::to_string)
            .ok_or(format!("no {k}: {line}"))
    };
    if !["debug", "info", "warn", "error"].contains(&text("level")?.as_str()) {
        return Err(format!("level: {line}"));
    }
    let ts = text("ts")?;
    let ts_ok = ts.len() == 27
        && ts.ends_with('Z')
        && ts.char_indices().all(|(i, c)| match i {
            4 | 7 => c == '-',
            10 => c == 'T',
            13 | 16 => c == ':',
            19 => c == '.',
            26 => c == 'Z',
            _ => c.is_ascii_digit(),
        });
    if !ts_ok {
        return Err(format!("ts {ts}: {line}"));
    }
    let caller = text("caller")?;
    let (file, no) = caller.rsplit_once(':').ok_or(format!("caller: {line}"))?;
    if no.parse::<u32>().is_err() || file.matches('/').count() != 1 {
        return Err(format!("caller {caller}: {line}"));
    }
    text("msg")?;
    let at = |k: &str| line.find(&format!("\"{k}\":")).unwrap_or(usize::MAX);
    if !(line.starts_with("{\"level\":") && at("ts") < at("caller") && at("caller") < at("msg")) {
        return Err(format!("key order: {line}"));
    }
    Ok(())
}

/// etcd 3.7.3's own lines (its default --log-format is json): the shape
/// [`zap_shape`] checks is etcd's, not an assumption.
#[tokio::test]
async fn etcd_lines_have_the_shape_kvd_copies() {
    let Some(etcd) = common::etcd_latest() else {
        eprintln!("etcd 3.7.3 is not built: skipped");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("etcd.log");
    let (client_port, peer_port) = (free_port(), free_port());
    let peer = format!("http://127.0.0.1:{peer_port}");
    let client = format!("http://127.0.0.1:{client_port}");
    let mut child = Command::new(etcd)
        .args(["--name", "e1", "--data-dir"])
        .arg(dir.path().join("data"))
        .args([
            "--listen-client-urls",
            &client,
            "--advertise-client-urls",
            &client,
        ])
        .args([
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
        ])
        .arg(format!("--initial-cluster=e1={peer}"))
        .arg(format!("--log-outputs={}", log.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn etcd");
    let lines = wait_until("etcd serves", WAIT_TIMEOUT, || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        async move {
            text.contains("ready to serve client requests")
                .then_some(text)
        }
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
    for line in lines.lines() {
        zap_shape(line).unwrap_or_else(|e| panic!("etcd's own line: {e}"));
    }
    let data_dir = lines.lines().find(|l| l.contains("\"data-dir\":"));
    assert!(data_dir.is_some(), "etcd's keys are hyphenated: {lines}");
}

#[tokio::test]
async fn json_logs_to_a_file_with_banner_slow_fsync_and_shutdown() {
    kvd_only(|| async {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("kvd.json.log");
        let failpoints = dir.path().join("failpoints");
        std::fs::write(&failpoints, "").expect("failpoints file");
        let (client_port, peer_port) = (free_port(), free_port());
        let endpoint = format!("http://127.0.0.1:{client_port}");
        let mut child = Command::new(Kind::Kvd.binary())
            .arg("--name=n1")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={endpoint}"))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"))
            .arg("--log-format=json")
            .arg(format!("--log-outputs={}", log.display()))
            .env("KVD_FAILPOINTS_FILE", &failpoints)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kvd");
        let pid = Pid::from_raw(child.id() as i32);
        let mut client = wait_until("kvd answers", WAIT_TIMEOUT, || {
            let ep = endpoint.clone();
            async move {
                let opts = ConnectOptions::new().with_connect_timeout(Duration::from_millis(500));
                let mut c = Client::connect([ep], Some(opts)).await.ok()?;
                c.put("ready", "1", None).await.ok()?;
                Some(c)
            }
        })
        .await;
        // A slow disk for one write: its fsync takes over etcd's 1 s.
        std::fs::write(&failpoints, "wal-fsync=sleep(1100)").expect("arm");
        client
            .put("slow", "1", None)
            .await
            .expect("put on a slow disk");
        std::fs::write(&failpoints, "").expect("disarm");
        kill(pid, Signal::SIGTERM).expect("SIGTERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Ok(Some(st)) = child.try_wait() {
                break st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("kvd did not exit after SIGTERM");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let mut stderr = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
        }
        assert!(status.success(), "{status}: {stderr}");
        // Everything went to the file, nothing to stderr.
        assert_eq!(stderr, "", "stderr is not a --log-outputs target");

        let text = std::fs::read_to_string(&log).unwrap_or_default();
        for line in text.lines() {
            zap_shape(line).unwrap_or_else(|e| panic!("not etcd's shape: {e}"));
        }
        let lines = json_lines(&log);
        let banner = with_message(&lines, "starting a kvd server");
        assert_eq!(banner.len(), 1, "{lines:#?}");
        let b = banner[0];
        assert_eq!(b["level"], "info");
        assert_eq!(b["name"], "n1");
        // etcd's hyphenated keys, as in its "starting an etcd server" line.
        assert_eq!(b["listen-client-urls"], endpoint.as_str());
        for field in [
            "member-id",
            "cluster-id",
            "data-dir",
            "wal-dir",
            "kvd-version",
        ] {
            assert!(b[field].is_string(), "banner lacks {field}: {b}");
        }
        assert_eq!(b["openraft-version"], kvd::logging::OPENRAFT_VERSION);

        let slow = with_message(&lines, "slow fdatasync");
        assert!(!slow.is_empty(), "no slow fdatasync warning: {lines:#?}");
        assert_eq!(slow[0]["level"], "warn");
        assert_eq!(slow[0]["expected-duration"], "1s");
        assert!(slow[0]["took"].is_string(), "{}", slow[0]);

        for msg in [
            "received signal; shutting down",
            "skipped leadership transfer for single voting member cluster",
            "stopped kvd server",
        ] {
            assert_eq!(with_message(&lines, msg).len(), 1, "{msg}: {lines:#?}");
        }
    })
    .await;
}

#[test]
fn log_flags_etcd_refuses_are_refused_with_its_words() {
    for (flag, words) in [
        ("--logger=capnslog", "--logger=capnslog is removed in v3.5"),
        ("--logger=glog", "unknown logger option \"glog\""),
        (
            "--log-format=text",
            "unknown log format: text, supported values json, console",
        ),
        (
            "--log-outputs=default,stdout",
            "multi logoutput for \"default\" is not supported yet",
        ),
    ] {
        let out = Command::new(Kind::Kvd.binary())
            .arg(flag)
            // Checked before anything is opened: nothing lands here.
            .arg("--data-dir=/nonexistent/kvd-log-flags")
            .env_remove("RUST_BACKTRACE")
            .output()
            .expect("run kvd");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flag} was accepted");
        assert!(stderr.contains(words), "{flag}: {stderr}");
    }
}
