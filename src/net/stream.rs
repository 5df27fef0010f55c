//! A socket that may or may not be wrapped in TLS.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Either side of a session: plain TCP, TLS accepted from a client, or TLS
/// opened to the upstream.
pub enum Stream {
    Plain(TcpStream),
    ServerTls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    ClientTls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Stream {
    pub fn is_tls(&self) -> bool {
        !matches!(self, Stream::Plain(_))
    }

    /// Reads what has arrived into `buf`, first giving it `chunk` bytes of
    /// room when it has less than half that (BytesMut alone would offer 64
    /// bytes at a time). An empty buffer of a plain socket gets its room
    /// only once the socket is readable: a session that sits idle with
    /// released buffers holds no read memory while it waits, which is what
    /// keeps thousands of idle sessions small. Reads at most `chunk` bytes:
    /// a reserve may leave more room than asked for, and reads that filled
    /// all of it let a busy session's buffer grow with the socket's backlog
    /// (tens of MB during a bulk read). Cancel-safe like `read_buf`.
    pub async fn read_chunk(&mut self, buf: &mut BytesMut, chunk: usize) -> io::Result<usize> {
        if buf.capacity() - buf.len() < chunk / 2 {
            if let (Stream::Plain(s), true) = (&*self, buf.is_empty()) {
                s.readable().await?;
            }
            if buf.capacity() == 0 {
                if let Some(spare) = take_spare() {
                    *buf = spare;
                }
            }
            buf.reserve(chunk);
        }
        self.read_buf(&mut (&mut *buf).limit(chunk)).await
    }
}

/// How many released buffers a worker thread keeps for the next read, and
/// the largest it keeps: at most 2 MiB a thread.
const SPARE_BUFFERS: usize = 32;
const MAX_SPARE_CAPACITY: usize = 64 * 1024;

thread_local! {
    /// Buffers that sessions gave back between statements (`give_back`),
    /// for the next read on this thread: a pooled session otherwise
    /// allocates and frees a read buffer per statement and direction.
    static SPARE: std::cell::RefCell<Vec<BytesMut>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn take_spare() -> Option<BytesMut> {
    SPARE.with(|spare| spare.borrow_mut().pop())
}

/// Releases a session's empty buffer: it keeps no memory while the session
/// is idle, and the memory goes to the next read on this thread, within
/// bounds (dropped otherwise). A buffer with data in it is left as it is.
pub fn give_back(buf: &mut BytesMut) {
    if !buf.is_empty() || buf.capacity() == 0 {
        return;
    }
    let mut released = std::mem::take(buf);
    released.clear();
    if released.capacity() <= MAX_SPARE_CAPACITY {
        SPARE.with(|spare| {
            let mut spare = spare.borrow_mut();
            if spare.len() < SPARE_BUFFERS {
                spare.push(released);
            }
        });
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::ServerTls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::ClientTls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::ServerTls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::ClientTls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::ServerTls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
            Stream::ClientTls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::ServerTls(s) => s.is_write_vectored(),
            Stream::ClientTls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::ServerTls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::ClientTls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::ServerTls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::ClientTls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
