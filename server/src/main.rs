//! The kvd binary: flags in, server up, graceful exit on SIGINT/SIGTERM
//! (see [`kvd::shutdown`]).

use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use kvd::config::{parse_url, Config};
use kvd::logging::LogSettings;

/// jemalloc, not glibc's malloc: a request's buffers are often freed on
/// another tokio worker than the one that allocated them, and glibc then
/// takes the other arena's lock (futex calls on every loaded workload);
/// jemalloc's thread caches take 7-20% off kvd's CPU per request for a few
/// MiB of peak RSS (docs/benchmarks.md, "the allocator on a quiet machine").
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> anyhow::Result<()> {
    let cfg = Config::parse();
    // Log flags are checked before anything else, as etcd does: there is
    // nowhere to report the rest until the logger is up.
    let logs = LogSettings::from_config(&cfg)?;
    kvd::logging::init(&logs)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let result = runtime.block_on(run(cfg));
    // After a fatal error tasks may still be blocked on a failing disk: do
    // not wait for them forever.
    runtime.shutdown_timeout(EXIT_GRACE);
    result
}

/// How long the runtime may take to wind down after `run` returns.
const EXIT_GRACE: Duration = Duration::from_secs(2);

async fn run(cfg: Config) -> anyhow::Result<()> {
    cfg.validate()?;
    // Caught from here on, so no signal kills kvd mid-write.
    let mut signals = kvd::shutdown::Signals::install().context("installing signal handlers")?;
    // TLS files are read and checked here, so a missing, unreadable or
    // mismatched one stops kvd before it binds anything.
    let client_files = kvd::tls::client_files(&cfg)?;
    let peer_files = kvd::tls::peer_files(&cfg)?;
    let client_tls = kvd::tls::acceptors(&cfg.listen_client_urls, client_files.as_ref())?;
    let peer_tls = kvd::tls::acceptors(&cfg.listen_peer_urls, peer_files.as_ref())?;
    kvd::tls::install(kvd::tls::outgoing(&cfg)?);
    let addrs = cfg
        .listen_client_urls
        .iter()
        .map(|u| parse_url(u))
        .collect::<Result<Vec<_>, _>>()?;
    let listeners = kvd::api::bind(&addrs)
        .await
        .with_context(|| format!("binding {:?}", cfg.listen_client_urls))?;
    let peer_addrs = cfg
        .listen_peer_urls
        .iter()
        .map(|u| parse_url(u))
        .collect::<Result<Vec<_>, _>>()?;
    for (url, addr) in cfg.listen_peer_urls.iter().zip(&peer_addrs) {
        // An https peer URL with a peer CA admits only members with a
        // certificate signed by it (etcd's rule); anything else is open.
        let verified = kvd::config::is_https(url) && cfg.peer_trusted_ca_file.is_some();
        if !addr.ip().is_loopback() && !verified {
            // The peer port takes raft messages and forwarded writes; without
            // peer TLS nothing but the cluster id (no secret) guards it.
            tracing::warn!(
                url = %url,
                "peer URL listens beyond loopback without verified peer TLS: anyone who reaches it \
                 can talk to the cluster; use https peer URLs with --peer-trusted-ca-file and \
                 --peer-client-cert-auth, or expose the port only to the other members"
            );
        }
    }
    let peer_listeners = kvd::api::bind(&peer_addrs)
        .await
        .with_context(|| format!("binding {:?}", cfg.listen_peer_urls))?;
    let metrics_listeners = kvd::http::bind_metrics(&cfg.listen_metrics_urls).await?;
    // Start-up can wait on peers for long: a signal meanwhile stops it.
    let node = tokio::select! {
        node = kvd::node::Node::start(&cfg) => node.with_context(|| {
            format!(
                "starting member {:?} in {}",
                cfg.name,
                cfg.data_dir().display()
            )
        })?,
        sig = signals.first() => anyhow::bail!("received {sig} while starting: exiting"),
    };
    banner(&cfg, &node);
    // Separate stops: clients are drained before leadership is handed
    // over, peers only after it (the hand-over needs them).
    let (peer_stop, peer_rx) = tokio::sync::watch::channel(false);
    let (client_stop, client_rx) = tokio::sync::watch::channel(false);
    // --listen-metrics-urls serves /metrics and /health from the start,
    // before the client port, as etcd's metrics listener does.
    tokio::spawn(kvd::http::serve_metrics(
        node.clone(),
        metrics_listeners,
        client_rx.clone(),
    ));
    let mut peer = tokio::spawn(kvd::node::peer::serve_with_tls(
        node.clone(),
        peer_listeners.into_iter().zip(peer_tls).collect(),
        peer_rx,
    ));
    let ready_line = ReadyLine {
        name: cfg.name.clone(),
        data_dir: cfg.data_dir().display().to_string(),
    };
    let mut client = tokio::spawn(serve_clients_when_ready(
        node.clone(),
        listeners.into_iter().zip(client_tls).collect(),
        client_rx,
        ready_line,
    ));
    tokio::select! {
        sig = signals.first() => {
            tracing::info!(signal = sig, "received signal; shutting down");
        }
        r = &mut client => {
            r.context("server task")?.context("serving")?;
            anyhow::bail!("the client server stopped by itself");
        }
        r = &mut peer => {
            r.context("peer server task")?.context("serving peers")?;
            anyhow::bail!("the peer server stopped by itself");
        }
        fatal = node.fatal() => match fatal {
            kvd::node::Fatal::Storage(reason) => {
                tracing::error!(%reason, "fatal storage error: exiting (restart recovers from disk)");
                anyhow::bail!("fatal storage error: {reason}");
            }
            kvd::node::Fatal::Removed(reason) => {
                tracing::error!(%reason, "removed from the cluster: exiting (a restart will not rejoin; add a new member instead)");
                anyhow::bail!("removed from the cluster: {reason}");
            }
        },
    }
    signals.exit_on_next();
    let servers = kvd::shutdown::Servers {
        client_stop,
        client,
        peer_stop,
        peer,
    };
    kvd::shutdown::graceful(&node, servers).await;
    Ok(())
}

/// What the "kvd is ready" line names.
struct ReadyLine {
    name: String,
    data_dir: String,
}

/// Serves the client listeners once the member is ready ([`kvd::node::Node::ready`]),
/// as etcd's serve waits for ReadyNotify: until then a restarted member
/// could answer from before what it served before it went down. The
/// listeners are bound already, so connections are accepted by the kernel
/// and wait, unanswered, as with etcd. A stop before that ends the task.
async fn serve_clients_when_ready(
    node: std::sync::Arc<kvd::node::Node>,
    listeners: Vec<(tokio::net::TcpListener, Option<kvd::tls::TlsAcceptor>)>,
    stop: tokio::sync::watch::Receiver<bool>,
    line: ReadyLine,
) -> Result<(), tonic::transport::Error> {
    let mut stopped = stop.clone();
    tokio::select! {
        _ = node.ready() => {}
        // A dropped sender means stop as well.
        _ = stopped.wait_for(|s| *s) => return Ok(()),
    }
    for (l, tls) in &listeners {
        if let Ok(a) = l.local_addr() {
            let scheme = if tls.is_some() { "https" } else { "http" };
            tracing::info!(address = %a, scheme, "ready to serve client requests");
        }
    }
    tracing::info!(
        name = %line.name,
        member_id = format_args!("{:x}", node.member_id()),
        data_dir = %line.data_dir,
        "kvd is ready"
    );
    kvd::api::serve_with_tls(node, listeners, stop).await
}

/// etcd's "starting an etcd server" line: who this member is and where it
/// keeps and serves what, for whoever reads the log first.
fn banner(cfg: &Config, node: &kvd::node::Node) {
    let cluster_id = node.header(0).map_or(0, |h| h.cluster_id);
    tracing::info!(
        kvd_version = env!("CARGO_PKG_VERSION"),
        openraft_version = kvd::logging::OPENRAFT_VERSION,
        os = std::env::consts::OS,
        arch = std::env::consts::ARCH,
        name = %cfg.name,
        member_id = format_args!("{:x}", node.member_id()),
        cluster_id = format_args!("{cluster_id:x}"),
        data_dir = %cfg.data_dir().display(),
        wal_dir = %cfg.wal_dir().display(),
        listen_client_urls = %cfg.listen_client_urls.join(","),
        advertise_client_urls = %cfg.client_urls().join(","),
        listen_peer_urls = %cfg.listen_peer_urls.join(","),
        initial_advertise_peer_urls = %cfg.peer_urls().join(","),
        initial_cluster_state = %cfg.initial_cluster_state,
        "starting a kvd server"
    );
}
