//! `kvctl`: an etcdctl-compatible command line client for kv and any etcd
//! v3 server, built only on the public API of `kv-client`.
//!
//! Layout follows etcdctl: `global.rs` (flags and client), `commands/` (one
//! file per command; commands never print), `printer/` (one file per output
//! format; printers never make RPCs), `exit.rs` (exit codes, `Error: ...`).

mod commands;
mod env;
mod exit;
mod global;
mod prefix;
mod printer;
mod progress;

use std::io::Write;

use clap::{CommandFactory, Parser, Subcommand};

use commands::endpoint::{EndpointArgs, EndpointCommand};
use commands::member::MemberArgs;
use commands::{
    alarm::AlarmArgs, compaction::CompactionArgs, del::DelArgs, get::GetArgs, lease::LeaseArgs,
    put::PutArgs, Output,
};
use exit::{exit_with_error, ExitError, EXIT_SUCCESS};
use global::GlobalFlags;
use printer::PrintOptions;

/// A simple command line client for kv and etcd3.
#[derive(Debug, Parser)]
#[command(name = "kvctl", version, about, after_help = ENV_HELP)]
struct Cli {
    #[command(flatten)]
    global: GlobalFlags,
    #[command(subcommand)]
    command: Command,
}

/// What `kvctl --help` adds after the flags.
const ENV_HELP: &str = "\
Commands may be shortened to any unique prefix, as in etcdctl (`compact`, `mem list`).

Every global flag can also be set with ETCDCTL_<FLAG>: the flag's name upper-cased, '-' as '_'
(ETCDCTL_ENDPOINTS, ETCDCTL_DIAL_TIMEOUT=3s, ETCDCTL_WRITE_OUT=json, ETCDCTL_HEX=true, ...);
KVCTL_ENDPOINTS is read when ETCDCTL_ENDPOINTS is unset. Giving a flag both ways is an error.

Unlike etcdctl 3.4: a flag shadowing its variable is reported as `Error: ...` (etcdctl logs a
timestamped internal line), an unknown ETCDCTL_* variable as `Warning: ...`, and a variable its
flag cannot take (ETCDCTL_HEX=maybe) is refused with exit 128 (etcdctl silently ignores it).";

#[derive(Debug, Subcommand)]
enum Command {
    /// Puts the given key into the store
    Put(PutArgs),
    /// Gets the key or a range of keys
    Get(GetArgs),
    /// Removes the specified key or range of keys [key, range_end)
    Del(DelArgs),
    /// Lease related commands
    Lease(LeaseArgs),
    /// Compacts the event history in etcd
    Compaction(CompactionArgs),
    /// Alarm related commands
    Alarm(AlarmArgs),
    /// Membership related commands
    Member(MemberArgs),
    /// Endpoint related commands
    Endpoint(EndpointArgs),
    /// Acquires a named lock
    Lock(commands::lock::LockArgs),
    /// Observes and participates in leader election
    Elect(commands::elect::ElectArgs),
    /// Registers, lists and watches service instances
    Service(commands::service::ServiceArgs),
    /// Txn processes all the requests in one transaction
    Txn(commands::txn::TxnArgs),
    /// Watches events stream on keys or prefixes
    Watch(commands::watch::WatchArgs),
    /// Defragments the storage of the etcd members with given endpoints
    Defrag(commands::defrag::DefragArgs),
    /// Transfers leadership to another etcd cluster member.
    MoveLeader(commands::move_leader::MoveLeaderArgs),
    /// Makes a mirror at the destination etcd cluster
    MakeMirror(commands::make_mirror::MakeMirrorArgs),
    /// commands for checking properties of the etcd cluster
    Check(commands::check::CheckArgs),
    /// Manages etcd node snapshots
    Snapshot(commands::snapshot::SnapshotArgs),
    /// Enable or disable authentication
    Auth(commands::auth::AuthArgs),
    /// User related commands
    User(commands::user::UserArgs),
    /// Role related commands
    Role(commands::role::RoleArgs),
    /// Prints the version of kvctl
    Version,
}

async fn run(cli: Cli) -> Result<(), ExitError> {
    let format = cli.global.output_format()?;
    let mut popts = PrintOptions {
        hex: cli.global.hex,
        ..PrintOptions::default()
    };
    // Validate before connecting, as etcdctl does.
    enum Req {
        Put(commands::put::PutRequest),
        Get(String, kv_client::GetOptions),
        Del(String, kv_client::DeleteOptions),
        Lease(commands::lease::LeaseRequest),
        Compaction(i64, bool),
        Alarm(commands::alarm::AlarmCommand),
        Member(commands::member::MemberRequest),
        Auth(commands::auth::AuthCommand),
        User(commands::user::UserRequest),
        Role(commands::role::RoleRequest),
    }
    let req = match &cli.command {
        Command::Put(a) => Req::Put(a.validate_with(&mut std::io::stdin().lock())?),
        Command::Get(a) => {
            popts.value_only = a.print_value_only;
            let (k, o) = a.validate()?;
            Req::Get(k, o)
        }
        Command::Del(a) => {
            let (k, o) = a.validate()?;
            Req::Del(k, o)
        }
        Command::Lease(a) => match a.validate()? {
            commands::lease::LeaseRequest::KeepAlive(id, once) => {
                let client = cli.global.client().await?;
                let mut sink = printing_sink(format, popts);
                return commands::lease::keep_alive(&client, id, once, &mut sink).await;
            }
            r => Req::Lease(r),
        },
        Command::Compaction(a) => Req::Compaction(a.validate()?, a.physical),
        Command::Alarm(a) => {
            a.validate()?;
            Req::Alarm(a.command.clone())
        }
        Command::Member(a) => Req::Member(a.validate()?),
        Command::Auth(a) => {
            a.validate()?;
            Req::Auth(a.command.clone())
        }
        // Reads any password before connecting, as etcdctl does.
        Command::User(a) => Req::User(a.validate()?),
        Command::Role(a) => Req::Role(a.validate()?),
        Command::Endpoint(
            a @ EndpointArgs {
                command: EndpointCommand::Hashkv { rev },
                ..
            },
        ) => {
            let global = a.resolve(&cli.global).await?;
            let mut sink = printing_sink(format, popts);
            let (hs, failed) = commands::endpoint::run_hashkv(&global, *rev, &mut sink).await?;
            sink(hs)?;
            return failed.map_or(Ok(()), Err);
        }
        Command::Txn(a) => {
            let client = cli.global.client().await?;
            let mut sink = printing_sink(format, popts);
            let mut stdin = std::io::stdin().lock();
            return commands::txn::run(&client, a, &mut stdin, &mut sink).await;
        }
        Command::Watch(a) => {
            if !a.interactive {
                a.validate()?;
            }
            let client = cli.global.client().await?;
            let mut sink = printing_sink(format, popts);
            return commands::watch::run(&client, a, &mut sink).await;
        }
        Command::Defrag(a) => {
            let (out, failed) = commands::defrag::run(&cli.global, a.cluster).await?;
            let p = printer::new_printer(format, popts);
            emit(p.as_ref(), &out)?;
            if failed {
                // etcdctl exits 1 after the per-member lines, with no `Error:`.
                return Err(ExitError::silent(exit::EXIT_ERROR));
            }
            return Ok(());
        }
        Command::Check(commands::check::CheckArgs {
            command: commands::check::CheckCommand::Perf(a),
        }) => {
            let load = a.validate()?;
            return commands::check::run(&cli.global, a, load).await;
        }
        Command::MakeMirror(a) => {
            a.validate()?;
            let mut sink = printing_sink(format, popts);
            return commands::make_mirror::run(&cli.global, a, &mut sink).await;
        }
        Command::Check(commands::check::CheckArgs {
            command: commands::check::CheckCommand::Datascale(a),
        }) => {
            let scale = a.validate()?;
            return commands::datascale::run(&cli.global, a, scale).await;
        }
        Command::MoveLeader(a) => {
            let target = a.validate()?;
            let out = commands::move_leader::run(&cli.global, target).await?;
            let p = printer::new_printer(format, popts);
            return emit(p.as_ref(), &out);
        }
        Command::Snapshot(a) => {
            use commands::snapshot::{SnapshotArgs, SnapshotCommand};
            let out = match &a.command {
                SnapshotCommand::Save { args } => {
                    let path = SnapshotArgs::validate_save(args, &cli.global)?;
                    commands::snapshot::run(&cli.global, path).await?
                }
                SnapshotCommand::Status { args } => commands::snapshot_status::run(args)?,
                SnapshotCommand::Restore(r) => commands::snapshot::restore(r)?,
            };
            let p = printer::new_printer(format, popts);
            return emit(p.as_ref(), &out);
        }
        Command::Endpoint(
            a @ EndpointArgs {
                command: EndpointCommand::Health,
                ..
            },
        ) => {
            let hs = commands::endpoint::run(&a.resolve(&cli.global).await?).await?;
            let unhealthy =
                matches!(&hs, Output::EndpointHealth(l) if l.iter().any(|h| !h.error.is_empty()));
            let p = printer::new_printer(format, popts);
            emit(p.as_ref(), &hs)?;
            if unhealthy {
                return Err(ExitError::new(exit::EXIT_ERROR, "unhealthy cluster"));
            }
            return Ok(());
        }
        Command::Endpoint(
            a @ EndpointArgs {
                command: EndpointCommand::Status,
                ..
            },
        ) => {
            let st = commands::endpoint::run_status(&a.resolve(&cli.global).await?).await?;
            let p = printer::new_printer(format, popts);
            return emit(p.as_ref(), &st);
        }
        // Long-running commands print as they go.
        Command::Lock(a) => {
            let (name, command) = a.validate()?;
            let client = cli.global.client().await?;
            return commands::lock::run(&client, format, a.ttl, name, command).await;
        }
        Command::Elect(a) => {
            let req = a.validate()?;
            let client = cli.global.client().await?;
            return commands::elect::run(&client, format, req).await;
        }
        Command::Service(a) => {
            a.validate()?;
            let client = cli.global.client().await?;
            return commands::service::run(&client, format, a).await;
        }
        Command::Version => {
            let p = printer::new_printer(format, popts);
            return emit(p.as_ref(), &commands::version::run());
        }
    };
    let out: Output = {
        let client = cli.global.client().await?;
        match req {
            Req::Put(r) => commands::put::run(&client, r).await?,
            Req::Get(k, o) => commands::get::run(&client, k, o).await?,
            Req::Del(k, o) => commands::del::run(&client, k, o).await?,
            Req::Lease(r) => commands::lease::run(&client, r).await?,
            Req::Compaction(rev, physical) => {
                commands::compaction::run(&client, rev, physical).await?
            }
            Req::Alarm(c) => commands::alarm::run(&client, &c).await?,
            Req::Member(r) => commands::member::run(&client, r).await?,
            Req::Auth(c) => commands::auth::run(&client, &c).await?,
            Req::User(r) => commands::user::run(&client, r).await?,
            Req::Role(r) => commands::role::run(&client, r).await?,
        }
    };
    // As etcdctl, these are checked only once the answer is in.
    if let Command::Get(a) = &cli.command {
        if a.count_only && format != global::OutputFormat::Fields {
            return Err(ExitError::bad_args(
                "--count-only is only for `--write-out=fields`",
            ));
        }
        if a.print_value_only && format != global::OutputFormat::Simple {
            return Err(ExitError::bad_args(
                "print-value-only is only for `--write-out=simple`",
            ));
        }
    }
    let p = printer::new_printer(format, popts);
    emit(p.as_ref(), &out)
}

/// A sink for long-running commands: prints each output as it comes.
fn printing_sink(
    format: global::OutputFormat,
    popts: PrintOptions,
) -> impl FnMut(Output) -> Result<(), ExitError> {
    let p = printer::new_printer(format, popts);
    move |out| emit(p.as_ref(), &out)
}

/// Prints one command output on stdout.
fn emit(p: &dyn printer::Printer, out: &Output) -> Result<(), ExitError> {
    let stdout = std::io::stdout();
    let mut lock = stdout.lock();
    let mut err = std::io::stderr();
    printer::print(p, &mut lock, &mut err, out)?;
    lock.flush().map_err(printer::io_err)
}

/// Prints clap's parse error as etcdctl does (`Error: ...`, exit 1), or
/// its help/version text.
fn parse_failed(e: clap::Error) -> ! {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        e.exit();
    }
    let text = e.to_string();
    let first = text
        .lines()
        .next()
        .unwrap_or("")
        .trim_start_matches("error: ");
    exit_with_error(&ExitError::new(exit::EXIT_ERROR, first))
}

/// The command line with command prefixes expanded and the global flags
/// set from `ETCDCTL_*` variables.
fn parse() -> Result<Cli, ExitError> {
    let root = Cli::command();
    let mut args = prefix::expand(std::env::args_os().collect(), &root)?;
    let vars: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let matches = root
        .clone()
        .try_get_matches_from(&args)
        .unwrap_or_else(|e| parse_failed(e));
    for name in env::unrecognized(&root, &vars) {
        eprintln!("Warning: unrecognized environment variable {name} (ignored)");
    }
    let from_env = env::flags_from_env(&root, &matches, &vars)?;
    let at = args.len().min(1);
    args.splice(at..at, from_env);
    Ok(Cli::try_parse_from(args).unwrap_or_else(|e| parse_failed(e)))
}

fn main() {
    let cli = match parse() {
        Ok(cli) => cli,
        Err(e) => exit_with_error(&e),
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => exit_with_error(&ExitError::new(exit::EXIT_ERROR, e.to_string())),
    };
    match rt.block_on(run(cli)) {
        Ok(()) => std::process::exit(EXIT_SUCCESS),
        Err(e) => exit_with_error(&e),
    }
}
