//! The kvd binary: flags in, server up, clean exit on SIGINT/SIGTERM.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use kvd::config::{parse_url, Config};
use tokio::signal::unix::{signal, SignalKind};

fn main() -> anyhow::Result<()> {
    let cfg = Config::parse();
    // openraft logs every election at info; keep it to warnings unless asked.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| {
            tracing_subscriber::EnvFilter::try_new(format!("{},openraft=warn", cfg.log_level))
        })
        .context("invalid --log-level")?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
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
    let node = kvd::node::Node::start(&cfg).await.with_context(|| {
        format!(
            "starting member {:?} in {}",
            cfg.name,
            cfg.data_dir().display()
        )
    })?;
    for l in &listeners {
        if let Ok(a) = l.local_addr() {
            tracing::info!(addr = %a, "serving client requests");
        }
    }
    tracing::info!(
        name = %cfg.name,
        member_id = format_args!("{:x}", node.member_id()),
        data_dir = %cfg.data_dir().display(),
        "kvd is ready"
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let peers = tokio::spawn(kvd::node::peer::serve_with_tls(
        node.clone(),
        peer_listeners.into_iter().zip(peer_tls).collect(),
        stop_rx.clone(),
    ));
    let server = tokio::spawn(kvd::api::serve_with_tls(
        node.clone(),
        listeners.into_iter().zip(client_tls).collect(),
        stop_rx,
    ));
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        r = server => {
            r.context("server task")?.context("serving")?;
        }
        r = peers => {
            r.context("peer server task")?.context("serving peers")?;
        }
        reason = node.fatal() => {
            tracing::error!(%reason, "fatal storage error: exiting (restart recovers from disk)");
            anyhow::bail!("fatal storage error: {reason}");
        }
    }
    let _ = stop_tx.send(true);
    node.shutdown().await;
    Ok(())
}
