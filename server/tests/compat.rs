//! Clients we did not write, in other languages: PyPI's `etcd3` and npm's
//! `etcd3`, each running a scripted session (tests/compat/*) against kvd and
//! against etcd. `scripts/setup.sh` installs both clients.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{each_kind, Kind, Server};

fn compat_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/compat")
}

fn run(kind: Kind, mut cmd: Command) -> Vec<String> {
    let out = cmd.output().expect("client script could not be started");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        out.status.success(),
        "[{kind}] client script failed ({}):\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    stdout.lines().map(str::to_string).collect()
}

fn port(server: &Server) -> String {
    server
        .endpoint()
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn python_etcd3_client() {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/compat-venv/bin/python");
    assert!(
        python.exists(),
        "run scripts/setup.sh first: {} is missing",
        python.display()
    );
    each_kind(|kind| {
        let python = python.clone();
        async move {
            let server = Server::start(kind).await;
            let mut cmd = Command::new(&python);
            cmd.arg(compat_dir().join("python_etcd3.py"))
                .arg("127.0.0.1")
                .arg(port(&server));
            tokio::task::spawn_blocking(move || run(kind, cmd))
                .await
                .unwrap()
        }
    })
    .await;
}

#[tokio::test]
async fn node_etcd3_client() {
    let modules = compat_dir().join("node_modules");
    assert!(
        modules.join("etcd3").exists(),
        "run scripts/setup.sh first: {} is missing",
        modules.display()
    );
    each_kind(|kind| {
        let modules = modules.clone();
        async move {
            let server = Server::start(kind).await;
            let mut cmd = Command::new("node");
            cmd.env("NODE_PATH", &modules)
                .arg(compat_dir().join("node_etcd3.js"))
                .arg(format!("127.0.0.1:{}", port(&server)));
            tokio::task::spawn_blocking(move || run(kind, cmd))
                .await
                .unwrap()
        }
    })
    .await;
}
