//! Long-running kvctl processes (service register/watch/dns) whose output
//! lines a test waits for.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::KVCTL;

/// Generous deadline for one expected observation.
pub const WAIT: Duration = Duration::from_secs(30);

/// A child process killed (and reaped) on drop.
pub struct Proc(pub Child);

impl Proc {
    pub fn signal(&self, sig: Signal) {
        kill(Pid::from_raw(self.0.id() as i32), sig).unwrap();
    }

    /// Waits for the process to exit (bounded) and returns its status.
    pub fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(st) = self.0.try_wait().unwrap() {
                return st;
            }
            assert!(Instant::now() < deadline, "process did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `kvctl --endpoints EP args...`, stdout lines into a channel.
pub fn spawn_kvctl(ep: &str, args: &[&str], stdin: Stdio) -> (Proc, Receiver<String>) {
    let mut child = Command::new(KVCTL)
        .args(["--endpoints", ep])
        .args(args)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (Proc(child), rx)
}

/// Waits (up to [`WAIT`]) for a line starting with `prefix`, skipping others.
pub fn wait_line(rx: &Receiver<String>, prefix: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) if l.starts_with(prefix) => return l,
            Ok(_) => {}
            Err(e) => panic!("no line starting {prefix:?} within {WAIT:?}: {e}"),
        }
    }
}
