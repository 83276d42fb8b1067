//! `watch [KEY [RANGE_END]] [--prefix] [--rev] [--prev-kv] [-i]`: prints
//! events as they happen until interrupted or the server cancels the watch.
//! With `-i`, reads `watch ...` lines from stdin and runs them all at once.

use clap::{Args, Parser};
use futures::stream::{SelectAll, StreamExt};
use kv_client::{Client, Error, WatchOptions, WatchStream};
use tokio::sync::mpsc;

use super::Output;
use crate::exit::{ExitError, EXIT_INTERRUPTED, EXIT_INVALID_INPUT};

/// Watches events stream on keys or prefixes
#[derive(Debug, Clone, Args, Default)]
pub struct WatchArgs {
    /// Interactive mode
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Watch on a prefix if prefix is set
    #[arg(long)]
    pub prefix: bool,
    /// Revision to start watching
    #[arg(long, default_value = "0")]
    pub rev: String,
    /// get the previous key-value pair before the event happens
    #[arg(long)]
    pub prev_kv: bool,
    /// [key or prefix] [range_end]
    pub args: Vec<String>,
    /// [-- exec-command arg1 arg2 ...]: run for every event
    #[arg(last = true)]
    pub exec: Vec<String>,
}

impl WatchArgs {
    /// The `--rev` value, with Go's flag error (exit 1, as etcdctl's usage
    /// error).
    fn revision(&self) -> Result<i64, ExitError> {
        self.rev.parse().map_err(|_| {
            let r = &self.rev;
            ExitError::new(
                crate::exit::EXIT_ERROR,
                format!(
                    "invalid argument \"{r}\" for \"--rev\" flag: strconv.ParseInt: parsing \"{r}\": invalid syntax"
                ),
            )
        })
    }

    /// Checks the key arguments as etcdctl does and builds the watch.
    pub fn validate(&self) -> Result<(String, WatchOptions), ExitError> {
        if self.args.is_empty() || self.args.len() > 2 {
            return Err(ExitError::bad_args("bad number of arguments"));
        }
        if self.args.len() == 2 && self.prefix {
            return Err(ExitError::bad_args(
                "`range_end` and `--prefix` are mutually exclusive",
            ));
        }
        let mut opts = WatchOptions::new();
        if let Some(end) = self.args.get(1) {
            opts = opts.with_range(end.clone());
        }
        if self.prefix {
            opts = opts.with_prefix();
        }
        let rev = self.revision()?;
        if rev != 0 {
            opts = opts.with_start_revision(rev);
        }
        if self.prev_kv {
            opts = opts.with_prev_kv();
        }
        Ok((self.args[0].clone(), opts))
    }
}

/// One `watch ...` line of interactive mode.
#[derive(Debug, Parser)]
#[command(no_binary_name = true)]
struct WatchLine {
    #[command(flatten)]
    args: WatchArgs,
}

/// The end of a watch: the server canceled it.
fn canceled(e: Option<Error>, sink: super::Sink<'_>) -> Result<(), ExitError> {
    if let Some(e) = e {
        sink(Output::Notice(format!(
            "watch was canceled ({})",
            crate::exit::error_text(&e)
        )))?;
    }
    Err(ExitError::new(
        EXIT_INTERRUPTED,
        "watch is canceled by the server",
    ))
}

/// Runs the watch (or, with `-i`, the watches read from stdin), handing
/// each batch of events to `sink`.
pub async fn run(
    client: &Client,
    args: &WatchArgs,
    sink: super::Sink<'_>,
) -> Result<(), ExitError> {
    if args.interactive {
        return interactive(client, sink).await;
    }
    let (key, opts) = args.validate()?;
    let mut stream = client.watch(key, opts).await?;
    while let Some(batch) = stream.next().await {
        match batch {
            Ok(b) => {
                sink(Output::Watch(b.clone()))?;
                exec_for_events(&args.exec, &b, sink).await?;
            }
            Err(e) => return canceled(Some(e), sink),
        }
    }
    canceled(None, sink)
}

/// Runs the `-- CMD ARGS` of the watch once per event, with the event in
/// its environment (values Go-quoted, as etcdctl sets them); a failing
/// command ends the watch with exit 1.
async fn exec_for_events(
    exec: &[String],
    b: &kv_client::WatchBatch,
    sink: super::Sink<'_>,
) -> Result<(), ExitError> {
    let Some((prog, rest)) = exec.split_first() else {
        return Ok(());
    };
    let q = |v: &[u8]| crate::printer::fields::go_quote(v);
    for e in b.events() {
        let kv = e.kv.clone().unwrap_or_default();
        let status = tokio::process::Command::new(prog)
            .args(rest)
            .env("ETCD_WATCH_REVISION", b.revision().to_string())
            .env(
                "ETCD_WATCH_EVENT_TYPE",
                q(e.r#type().as_str_name().as_bytes()),
            )
            .env("ETCD_WATCH_KEY", q(&kv.key))
            .env("ETCD_WATCH_VALUE", q(&kv.value))
            .status()
            .await;
        let failure = match status {
            Ok(s) if s.success() => continue,
            Ok(s) => match s.code() {
                Some(c) => format!("exit status {c}"),
                None => "signal: killed".to_string(),
            },
            Err(e) => e.to_string(),
        };
        let quoted: Vec<String> = exec.iter().map(|a| q(a.as_bytes())).collect();
        sink(Output::Notice(format!(
            "command [{}] error ({failure})",
            quoted.join(" ")
        )))?;
        return Err(ExitError::silent(crate::exit::EXIT_ERROR));
    }
    Ok(())
}

async fn interactive(client: &Client, sink: super::Sink<'_>) -> Result<(), ExitError> {
    // stdin is read on a blocking thread; lines arrive over a channel.
    let (tx, mut lines) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut line = String::new();
        loop {
            line.clear();
            let done = !(stdin.read_line(&mut line).is_ok() && line.ends_with('\n'));
            if tx.send((!done).then(|| line.trim().to_string())).is_err() || done {
                return;
            }
        }
    });
    let mut watches: SelectAll<WatchStream> = SelectAll::new();
    loop {
        tokio::select! {
            line = lines.recv() => {
                let Some(Some(line)) = line else {
                    return Err(ExitError::new(
                        EXIT_INVALID_INPUT,
                        "Error reading watch request line: EOF",
                    ));
                };
                if line.is_empty() {
                    continue;
                }
                match start(client, &line).await {
                    Ok(s) => watches.push(s),
                    Err(Rejected::Note(note)) => sink(Output::Notice(note))?,
                    Err(Rejected::Fatal(e)) => return Err(e),
                }
            }
            Some(batch) = watches.next(), if !watches.is_empty() => match batch {
                Ok(b) => sink(Output::Watch(b))?,
                Err(e) => return canceled(Some(e), sink),
            },
        }
    }
}

/// Why an interactive line started no watch.
enum Rejected {
    /// Said on stderr; reading goes on.
    Note(String),
    /// A flag error ends the command (exit 128), as in etcdctl.
    Fatal(ExitError),
}

/// Starts the watch of one interactive line, or says why not.
async fn start(client: &Client, line: &str) -> Result<WatchStream, Rejected> {
    let note = |why: String| Rejected::Note(format!("Invalid command {line} ({why})"));
    let args = super::txn::argify(line).map_err(Rejected::Fatal)?;
    if args.first().map(String::as_str) != Some("watch") {
        return Err(note("only support watch".into()));
    }
    if args.len() < 2 {
        return Err(note("command type or key is not provided".into()));
    }
    let parsed = WatchLine::try_parse_from(&args[1..]).map_err(|e| {
        use clap::error::{ContextKind, ContextValue, ErrorKind};
        let text = match (e.kind(), e.get(ContextKind::InvalidArg)) {
            (ErrorKind::UnknownArgument, Some(ContextValue::String(flag))) => {
                format!("unknown flag: {flag}")
            }
            _ => first_line(&e.to_string()).to_string(),
        };
        Rejected::Fatal(ExitError::bad_args(text))
    })?;
    // A bad --rev is a flag error here (fatal), unlike the checks below.
    parsed
        .args
        .revision()
        .map_err(|e| Rejected::Fatal(ExitError::bad_args(e.message)))?;
    let (key, opts) = parsed.args.validate().map_err(|e| note(e.message))?;
    client
        .watch(key, opts)
        .await
        .map_err(|e| note(crate::exit::error_text(&e)))
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("").trim_start_matches("error: ")
}
