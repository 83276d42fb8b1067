//! A TCP proxy on 127.0.0.1 that a test can switch between forwarding,
//! refusing and black-holing, to cut a client off its server on purpose.

use std::net::SocketAddr;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Forward every connection.
    Forward,
    /// Close every connection (new ones right after accepting).
    Refuse,
    /// Keep existing connections open but stop moving bytes on them (a
    /// half-open connection); new connections are forwarded.
    FreezeExisting,
    /// Accept new connections but never move a byte on them; existing
    /// connections are frozen too.
    Blackhole,
}

pub struct Proxy {
    addr: SocketAddr,
    mode: watch::Sender<Mode>,
    task: JoinHandle<()>,
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let (mode, rx) = watch::channel(Mode::Forward);
        let task = tokio::spawn(accept_loop(listener, target, rx));
        Proxy { addr, mode, task }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, mode: watch::Receiver<Mode>) {
    let mut conns = tokio::task::JoinSet::new();
    while let Ok((mut client, _)) = listener.accept().await {
        let now = *mode.borrow();
        match now {
            Mode::Refuse => {
                let _ = client.shutdown().await;
                continue;
            }
            Mode::Blackhole => {
                let mut rx = mode.clone();
                conns.spawn(async move {
                    // Hold the socket without reading until the mode changes.
                    let _ = rx.wait_for(|m| *m != Mode::Blackhole).await;
                    drop(client);
                });
                continue;
            }
            Mode::Forward | Mode::FreezeExisting => {}
        }
        let Ok(mut server) = TcpStream::connect(target).await else {
            continue;
        };
        let mut rx = mode.clone();
        rx.mark_unchanged();
        conns.spawn(async move {
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                frozen = next_change(&mut rx, |m| m != Mode::Forward) => {
                    // Frozen: keep both sockets open and move nothing until
                    // told to refuse or to forward again (then they close).
                    if frozen != Mode::Refuse {
                        next_change(&mut rx, |m| m == Mode::Refuse || m == Mode::Forward).await;
                    }
                }
            }
        });
    }
}

/// The next mode set after now that satisfies `pred` (never, if the proxy
/// is gone).
async fn next_change(rx: &mut watch::Receiver<Mode>, pred: impl Fn(Mode) -> bool) -> Mode {
    loop {
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
        let m = *rx.borrow_and_update();
        if pred(m) {
            return m;
        }
    }
}
