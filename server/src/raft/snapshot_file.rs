//! openraft's snapshot data: a file, either one at hand (a snapshot being
//! received) or one exported from the store only when first read.
//!
//! kvd's state machine is its store, durable on its own, so a raft snapshot
//! needs no copy of it: building one only records where the durable state
//! is (see `apply::snapshot`). Bytes are needed only when a member has to be
//! sent the state; then the store is exported, from a read transaction
//! taken together with the snapshot's meta, into an unnamed temporary file.
//! The export runs on a blocking thread at the first read or seek, so
//! handing out a snapshot that nobody reads (openraft asks for one at start)
//! costs nothing, and the state machine is not held up while it runs.

use std::future::Future;
use std::io::{self, SeekFrom};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};
use tokio::task::JoinHandle;

/// Writes the snapshot's bytes into a fresh file and returns it, rewound.
pub type Export = Box<dyn FnOnce() -> io::Result<std::fs::File> + Send>;

enum State {
    Ready(tokio::fs::File),
    /// Not started: nobody has read yet.
    Lazy(Export),
    Exporting(JoinHandle<io::Result<std::fs::File>>),
    /// The export failed; every later call fails the same way.
    Failed(io::ErrorKind, String),
}

/// Snapshot data: see the module docs.
pub struct SnapshotFile {
    state: State,
    /// A seek asked for before the file was there, done once it is.
    pending_seek: Option<SeekFrom>,
}

impl SnapshotFile {
    /// Data already in a file (for example one just received).
    pub fn ready(file: tokio::fs::File) -> SnapshotFile {
        SnapshotFile {
            state: State::Ready(file),
            pending_seek: None,
        }
    }

    /// Data produced by `export` on a blocking thread when first needed.
    pub fn lazy(export: Export) -> SnapshotFile {
        SnapshotFile {
            state: State::Lazy(export),
            pending_seek: None,
        }
    }

    /// The file, exported first if it had not been: for installing.
    pub async fn into_std(mut self) -> io::Result<std::fs::File> {
        std::future::poll_fn(|cx| self.poll_file(cx).map_ok(|_| ())).await?;
        match self.state {
            State::Ready(f) => Ok(f.into_std().await),
            _ => Err(io::Error::other("snapshot data is not ready")),
        }
    }

    /// Drives the state to `Ready` and returns the file, with any pending
    /// seek started (and so to be completed by the caller's poll_complete).
    fn poll_file(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<&mut tokio::fs::File>> {
        loop {
            match &mut self.state {
                State::Ready(_) => break,
                State::Failed(kind, msg) => {
                    return Poll::Ready(Err(io::Error::new(*kind, msg.clone())));
                }
                State::Lazy(_) => {
                    let State::Lazy(export) = std::mem::replace(
                        &mut self.state,
                        State::Failed(io::ErrorKind::Other, "export not started".into()),
                    ) else {
                        unreachable!("matched Lazy just above");
                    };
                    self.state = State::Exporting(tokio::task::spawn_blocking(export));
                }
                State::Exporting(handle) => {
                    let done = ready!(Pin::new(handle).poll(cx));
                    self.state = match done {
                        Ok(Ok(f)) => State::Ready(tokio::fs::File::from_std(f)),
                        Ok(Err(e)) => {
                            tracing::error!(error = %e, "exporting the store for a snapshot");
                            State::Failed(e.kind(), format!("exporting a snapshot: {e}"))
                        }
                        Err(e) => State::Failed(
                            io::ErrorKind::Other,
                            format!("exporting a snapshot: the export task failed: {e}"),
                        ),
                    };
                }
            }
        }
        let State::Ready(f) = &mut self.state else {
            unreachable!("the loop ends only when ready");
        };
        if let Some(pos) = self.pending_seek.take() {
            Pin::new(&mut *f).start_seek(pos)?;
        }
        Poll::Ready(Ok(f))
    }
}

impl AsyncRead for SnapshotFile {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        let had_seek = me.pending_seek.is_some();
        let f = ready!(me.poll_file(cx))?;
        if had_seek {
            ready!(Pin::new(&mut *f).poll_complete(cx))?;
        }
        Pin::new(f).poll_read(cx, buf)
    }
}

impl AsyncSeek for SnapshotFile {
    fn start_seek(self: Pin<&mut Self>, position: SeekFrom) -> io::Result<()> {
        let me = self.get_mut();
        match &mut me.state {
            State::Ready(f) => Pin::new(f).start_seek(position),
            State::Failed(kind, msg) => Err(io::Error::new(*kind, msg.clone())),
            // Done when the file is there (the next poll_complete waits for it).
            State::Lazy(_) | State::Exporting(_) => {
                me.pending_seek = Some(position);
                Ok(())
            }
        }
    }

    fn poll_complete(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        let me = self.get_mut();
        let f = ready!(me.poll_file(cx))?;
        Pin::new(f).poll_complete(cx)
    }
}

impl AsyncWrite for SnapshotFile {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let f = ready!(self.get_mut().poll_file(cx))?;
        Pin::new(f).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let f = ready!(self.get_mut().poll_file(cx))?;
        Pin::new(f).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let f = ready!(self.get_mut().poll_file(cx))?;
        Pin::new(f).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncSeekExt};

    use super::*;

    fn export_of(bytes: &'static [u8], ran: Arc<AtomicBool>) -> Export {
        Box::new(move || {
            ran.store(true, Ordering::SeqCst);
            let mut f = tempfile::tempfile()?;
            f.write_all(bytes)?;
            std::io::Seek::seek(&mut f, SeekFrom::Start(0))?;
            Ok(f)
        })
    }

    #[tokio::test]
    async fn exports_only_when_read_and_honours_an_early_seek() {
        let ran = Arc::new(AtomicBool::new(false));
        let unread = SnapshotFile::lazy(export_of(b"unused", ran.clone()));
        drop(unread);
        assert!(
            !ran.load(Ordering::SeqCst),
            "a dropped snapshot is never exported"
        );

        let mut s = SnapshotFile::lazy(export_of(b"0123456789", ran.clone()));
        // openraft seeks to the end for the length, then to each chunk.
        assert_eq!(s.seek(SeekFrom::End(0)).await.expect("seek end"), 10);
        assert!(ran.load(Ordering::SeqCst));
        s.seek(SeekFrom::Start(4)).await.expect("seek");
        let mut out = String::new();
        s.read_to_string(&mut out).await.expect("read");
        assert_eq!(out, "456789");
    }

    #[tokio::test]
    async fn a_read_before_any_seek_starts_at_the_beginning() {
        let ran = Arc::new(AtomicBool::new(false));
        let s = SnapshotFile::lazy(export_of(b"abc", ran));
        let mut f = s.into_std().await.expect("exported");
        let mut out = String::new();
        std::io::Read::read_to_string(&mut f, &mut out).expect("read");
        assert_eq!(out, "abc");
    }

    #[tokio::test]
    async fn a_failed_export_fails_every_call() {
        let mut s = SnapshotFile::lazy(Box::new(|| Err(io::Error::other("disk gone"))));
        let e = s.seek(SeekFrom::Start(0)).await.expect_err("failed export");
        assert!(e.to_string().contains("disk gone"), "{e}");
        let mut buf = [0u8; 4];
        let e = s.read(&mut buf).await.expect_err("still failed");
        assert!(e.to_string().contains("disk gone"), "{e}");
    }
}
