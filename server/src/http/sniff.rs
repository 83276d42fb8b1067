//! Tells HTTP/2 from HTTP/1.1 on a client connection by its first bytes, so
//! that only HTTP/2 goes through [`AuthorityFix`] (which parses HTTP/2
//! frames) and HTTP/1.1 requests (curl, probes) reach hyper untouched.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

use crate::api::authority::AuthorityFix;

/// The HTTP/2 client connection preface.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A connection's bytes already read while deciding, replayed first.
pub struct Replay<S> {
    inner: S,
    head: Vec<u8>,
    pos: usize,
}

impl<S: AsyncRead + Unpin> AsyncRead for Replay<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pos < self.head.len() {
            let n = (self.head.len() - self.pos).min(buf.remaining());
            let start = self.pos;
            buf.put_slice(&self.head[start..start + n]);
            self.pos += n;
            if self.pos == self.head.len() {
                self.head = Vec::new();
                self.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

enum Mode<S> {
    /// Reading the first bytes; `S` is `None` only while switching.
    Probing(Option<S>, Vec<u8>),
    /// Boxed: the HPACK filter is large, the other modes small.
    H2(Box<AuthorityFix<Replay<S>>>),
    Plain(Replay<S>),
}

/// A client connection that picks its read path by its first bytes.
pub struct Sniffed<S: Connected> {
    mode: Mode<S>,
    info: S::ConnectInfo,
}

// No field is ever pinned in place (the connection is moved between modes
// and polled through `Pin::new`), so the connect info need not be Unpin.
impl<S: Connected + Unpin> Unpin for Sniffed<S> {}

impl<S: Connected> Sniffed<S> {
    pub fn new(inner: S) -> Self {
        let info = inner.connect_info();
        Sniffed {
            mode: Mode::Probing(Some(inner), Vec::with_capacity(PREFACE.len())),
            info,
        }
    }
}

impl<S: Connected + AsyncRead + Unpin> Sniffed<S> {
    /// Reads until the first bytes decide (the whole preface, a byte that
    /// differs from it, or end of stream).
    fn poll_decide(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let Mode::Probing(inner, head) = &mut self.mode else {
                return Poll::Ready(Ok(()));
            };
            let decided = head.len() == PREFACE.len() || !PREFACE.starts_with(head);
            if !decided {
                let Some(s) = inner.as_mut() else {
                    return Poll::Ready(Err(io::Error::other("connection lost while probing")));
                };
                let mut tmp = [0u8; 24];
                let want = PREFACE.len() - head.len();
                let mut rb = ReadBuf::new(&mut tmp[..want]);
                ready!(Pin::new(s).poll_read(cx, &mut rb))?;
                if !rb.filled().is_empty() {
                    head.extend_from_slice(rb.filled());
                    continue;
                }
                // End of stream: hand what there is to hyper.
            }
            let Some(s) = inner.take() else {
                return Poll::Ready(Err(io::Error::other("connection lost while probing")));
            };
            let h2 = head.as_slice() == PREFACE;
            let replay = Replay {
                inner: s,
                head: std::mem::take(head),
                pos: 0,
            };
            self.mode = match h2 {
                true => Mode::H2(Box::new(AuthorityFix::new(replay))),
                false => Mode::Plain(replay),
            };
        }
    }
}

impl<S: Connected + AsyncRead + Unpin> AsyncRead for Sniffed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        ready!(me.poll_decide(cx))?;
        match &mut me.mode {
            Mode::H2(f) => Pin::new(f).poll_read(cx, buf),
            Mode::Plain(r) => Pin::new(r).poll_read(cx, buf),
            Mode::Probing(..) => Poll::Ready(Ok(())),
        }
    }
}

fn lost() -> io::Error {
    io::Error::other("connection lost while probing")
}

/// Forwards a write-side call to whichever wrapper the mode holds (all of
/// them write straight to the connection).
macro_rules! write_side {
    ($self:expr, $s:ident => $call:expr, $none:expr) => {
        match &mut $self.get_mut().mode {
            Mode::Probing(Some($s), _) => $call,
            Mode::H2(f) => {
                let $s = f;
                $call
            }
            Mode::Plain(r) => {
                let $s = r;
                $call
            }
            Mode::Probing(None, _) => $none,
        }
    };
}

crate::write_through::write_through!(Replay);

impl<S: Connected + AsyncRead + AsyncWrite + Unpin> AsyncWrite for Sniffed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        write_side!(self, s => Pin::new(s).poll_write(cx, buf), Poll::Ready(Err(lost())))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        write_side!(self, s => Pin::new(s).poll_write_vectored(cx, bufs), Poll::Ready(Err(lost())))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        write_side!(self, s => Pin::new(s).poll_flush(cx), Poll::Ready(Ok(())))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        write_side!(self, s => Pin::new(s).poll_shutdown(cx), Poll::Ready(Ok(())))
    }
}

impl<S: Connected> Connected for Sniffed<S>
where
    S::ConnectInfo: Clone + Send + Sync + 'static,
{
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.info.clone()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Writes `input` from the client side and reads it back through a
    /// [`Sniffed`] server side.
    async fn through(input: &[u8]) -> Vec<u8> {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        client.write_all(input).await.unwrap();
        let mut s = Sniffed::new(server);
        let mut out = vec![0u8; input.len()];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut out))
            .await
            .expect("the bytes pass without waiting for more")
            .unwrap();
        out
    }

    #[tokio::test]
    async fn a_short_http1_request_passes_untouched() {
        // 30 bytes: past the preface's length, shorter than a frame header
        // after it. The HTTP/2 filter would hold them, waiting for more.
        let req = b"GET /livez HTTP/1.1\r\nHost:a\r\n\r\n";
        assert_eq!(through(req).await, req);
    }

    #[tokio::test]
    async fn http2_goes_through_the_authority_filter() {
        // The preface and an empty SETTINGS frame pass verbatim.
        let mut bytes = PREFACE.to_vec();
        bytes.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
        assert_eq!(through(&bytes).await, bytes);
    }
}
