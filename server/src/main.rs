//! The kvd binary: flags in, server up, clean exit on SIGINT/SIGTERM.

use std::io::IsTerminal;

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
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?
        .block_on(run(cfg))
}

async fn run(cfg: Config) -> anyhow::Result<()> {
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
    let peer_listeners = kvd::api::bind(&peer_addrs)
        .await
        .with_context(|| format!("binding {:?}", cfg.listen_peer_urls))?;
    let node = kvd::server::Node::start(&cfg).await.with_context(|| {
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
    let peers = tokio::spawn(kvd::server::peer::serve(
        node.clone(),
        peer_listeners,
        stop_rx.clone(),
    ));
    let server = tokio::spawn(kvd::api::serve(node.clone(), listeners, stop_rx));
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
    }
    let _ = stop_tx.send(true);
    node.shutdown().await;
    Ok(())
}
