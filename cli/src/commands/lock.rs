//! `kvctl lock <lockname> [exec-command arg1 arg2 ...]`: etcdctl's `lock`.
//!
//! Acquires the lock on a session of `--ttl` seconds (etcd's concurrency
//! key layout, so it excludes `etcdctl lock` on the same name). With a
//! command, runs it holding the lock (with `ETCD_LOCK_KEY` and
//! `ETCD_LOCK_REV` in its environment) and releases the lock when it exits;
//! a failing command is reported as etcdctl 3.4 does (`Error: exit status
//! N`, exit code 1). Without one, prints the lock key-value and holds the
//! lock until SIGINT or SIGTERM.

use std::io::Write;
use std::process::ExitStatus;

use clap::Args;
use kv_client::Client;
use kv_discovery::{Mutex, Session};

use crate::exit::{ExitError, EXIT_ERROR};
use crate::global::OutputFormat;
use crate::printer::{self, PrintOptions};

/// Arguments of `lock`.
#[derive(Debug, Args)]
pub struct LockArgs {
    /// timeout for session
    #[arg(long, default_value_t = 10)]
    pub ttl: i64,
    /// the lock name
    pub lockname: Option<String>,
    /// the command to run while holding the lock, and its arguments
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

impl LockArgs {
    /// Checks the arguments (before connecting, as etcdctl does).
    pub fn validate(&self) -> Result<(String, Vec<String>), ExitError> {
        let Some(name) = self.lockname.clone() else {
            return Err(ExitError::bad_args(
                "lock takes a lock name argument and an optional command to execute",
            ));
        };
        let mut command = self.command.clone();
        if command.first().is_some_and(|a| a == "--") {
            command.remove(0);
        }
        Ok((name, command))
    }
}

/// Runs `lock`: returns once the lock is released.
pub async fn run(
    client: &Client,
    format: OutputFormat,
    ttl: i64,
    name: String,
    command: Vec<String>,
) -> Result<(), ExitError> {
    let mut signals = util::Signals::new()?;
    let session = Session::with_ttl(client, ttl).await.map_err(err)?;
    let mutex = Mutex::new(&session, &name);
    let guard = tokio::select! {
        g = mutex.lock() => g.map_err(err)?,
        _ = signals.recv() => {
            // The dropped lock future withdraws our key; close the session
            // so nothing lingers for a TTL.
            let _ = session.close().await;
            return Err(ExitError::new(EXIT_ERROR, "context canceled"));
        }
    };
    if !command.is_empty() {
        let status = run_command(&command, guard.key(), guard.revision(), &mut signals).await;
        let unlocked = guard.unlock().await;
        let _ = session.close().await;
        let status = status?;
        if !status.success() {
            return Err(ExitError::new(EXIT_ERROR, describe_status(status)));
        }
        return unlocked.map_err(err);
    }
    let resp = client.get(guard.key(), None).await?;
    if resp.kvs().is_empty() {
        return Err(ExitError::new(EXIT_ERROR, "lock lost on init"));
    }
    let p = printer::new_printer(format, PrintOptions::default());
    util::emit(p.as_ref(), &super::Output::Get(resp))?;
    tokio::select! {
        _ = signals.recv() => {
            let r = guard.unlock().await;
            let _ = session.close().await;
            r.map_err(err)
        }
        _ = session.lost() => Err(ExitError::new(EXIT_ERROR, "session expired")),
    }
}

fn err(e: kv_discovery::Error) -> ExitError {
    ExitError::new(EXIT_ERROR, e.to_string())
}

/// Runs the command with the lock's environment, holding the lock until it
/// exits.
async fn run_command(
    command: &[String],
    key: &str,
    rev: i64,
    signals: &mut util::Signals,
) -> Result<ExitStatus, ExitError> {
    let mut child = tokio::process::Command::new(&command[0])
        .args(&command[1..])
        .env("ETCD_LOCK_KEY", key)
        .env("ETCD_LOCK_REV", rev.to_string())
        .spawn()
        .map_err(|e| ExitError::new(EXIT_ERROR, spawn_error(&command[0], &e)))?;
    let _ = std::io::stdout().flush();
    loop {
        tokio::select! {
            status = child.wait() => {
                return status.map_err(|e| ExitError::new(EXIT_ERROR, e.to_string()));
            }
            // As etcdctl: the lock is held until the command exits (a
            // terminal's Ctrl-C reaches the command itself).
            _ = signals.recv() => {}
        }
    }
}

/// The error text Go's `exec` gives for a command that cannot start.
fn spawn_error(program: &str, e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::NotFound && !program.contains('/') {
        format!("exec: {program:?}: executable file not found in $PATH")
    } else {
        format!("fork/exec {program}: {e}")
    }
}

/// Go's `ExitError` text: `exit status N` or `signal: NAME`.
fn describe_status(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => format!("signal: {}", util::signal_name(sig)),
        (None, None) => status.to_string(),
    }
}

/// What the long-running commands (`lock`, `elect`, `service`) share:
/// signal handling and printing as they go.
pub(crate) mod util {
    use std::io::Write;

    use tokio::signal::unix::{signal, Signal, SignalKind};

    use crate::commands::Output;
    use crate::exit::{ExitError, EXIT_ERROR};
    use crate::printer::{self, Printer};

    /// SIGINT and SIGTERM, caught from creation on.
    pub(crate) struct Signals {
        int: Signal,
        term: Signal,
    }

    impl Signals {
        pub(crate) fn new() -> Result<Signals, ExitError> {
            let io = |e: std::io::Error| ExitError::new(EXIT_ERROR, e.to_string());
            Ok(Signals {
                int: signal(SignalKind::interrupt()).map_err(io)?,
                term: signal(SignalKind::terminate()).map_err(io)?,
            })
        }

        /// Waits for the next SIGINT or SIGTERM.
        pub(crate) async fn recv(&mut self) {
            tokio::select! {
                _ = self.int.recv() => {}
                _ = self.term.recv() => {}
            }
        }
    }

    /// Prints one output and flushes (so readers of a pipe see it now).
    pub(crate) fn emit(p: &dyn Printer, out: &Output) -> Result<(), ExitError> {
        let stdout = std::io::stdout();
        let mut lock = stdout.lock();
        printer::print(p, &mut lock, &mut std::io::stderr(), out)?;
        lock.flush().map_err(printer::io_err)
    }

    /// Prints one line and flushes.
    pub(crate) fn line(text: &str) -> Result<(), ExitError> {
        let stdout = std::io::stdout();
        let mut lock = stdout.lock();
        writeln!(lock, "{text}").map_err(printer::io_err)?;
        lock.flush().map_err(printer::io_err)
    }

    /// Go's name for a signal, as in `signal: killed`.
    pub(crate) fn signal_name(sig: i32) -> String {
        match sig {
            1 => "hangup".into(),
            2 => "interrupt".into(),
            3 => "quit".into(),
            6 => "aborted".into(),
            9 => "killed".into(),
            11 => "segmentation fault".into(),
            13 => "broken pipe".into(),
            15 => "terminated".into(),
            n => format!("signal {n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leading_double_dash_is_dropped() {
        let a = LockArgs {
            ttl: 10,
            lockname: Some("l".into()),
            command: vec!["--".into(), "sh".into(), "-c".into(), "true".into()],
        };
        assert_eq!(a.validate().unwrap().1, ["sh", "-c", "true"]);
        let none = LockArgs {
            ttl: 10,
            lockname: None,
            command: vec![],
        };
        assert_eq!(
            none.validate().unwrap_err().code,
            crate::exit::EXIT_BAD_ARGS
        );
    }
}
