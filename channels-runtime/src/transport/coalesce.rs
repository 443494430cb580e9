//! A write buffer that exists only while frames are in flight.
//!
//! tungstenite is configured to hand every frame straight to the stream;
//! this wrapper gathers the frames of one batch and writes them with as few
//! system calls as the kernel allows when the batch is flushed. Between
//! batches it holds no allocation, so an idle connection costs nothing here.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Past this many buffered bytes a write first drains the buffer, so one
/// huge batch cannot make the buffer huge.
const HIGH_WATER: usize = 64 * 1024;

pub(crate) struct Coalesce<T> {
    inner: T,
    buf: Vec<u8>,
    written: usize,
}

impl<T> Coalesce<T> {
    pub(crate) fn new(inner: T) -> Self {
        Coalesce { inner, buf: Vec::new(), written: 0 }
    }
}

impl<T: AsyncWrite + Unpin> Coalesce<T> {
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.buf.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.buf[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.written = 0;
        self.buf = Vec::new();
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Coalesce<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Coalesce<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.buf.len() >= HIGH_WATER {
            ready!(this.poll_drain(cx))?;
        }
        this.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// Records each write call the wrapper makes.
    #[derive(Default)]
    struct Spy {
        writes: Vec<Vec<u8>>,
    }

    impl AsyncWrite for Spy {
        fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
            self.get_mut().writes.push(data.to_vec());
            Poll::Ready(Ok(data.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn a_batch_is_one_write_and_leaves_no_buffer() {
        let mut io = Coalesce::new(Spy::default());
        for frame in [&b"one"[..], b"two", b"three"] {
            io.write_all(frame).await.unwrap();
        }
        assert!(io.inner.writes.is_empty());
        io.flush().await.unwrap();
        assert_eq!(io.inner.writes, vec![b"onetwothree".to_vec()]);
        assert_eq!(io.buf.capacity(), 0);
    }

    #[tokio::test]
    async fn a_huge_batch_drains_at_the_high_water_mark() {
        let mut io = Coalesce::new(Spy::default());
        let chunk = vec![7u8; 40 * 1024];
        for _ in 0..3 {
            io.write_all(&chunk).await.unwrap();
        }
        io.flush().await.unwrap();
        assert_eq!(io.inner.writes.len(), 2);
        assert_eq!(io.inner.writes.iter().map(Vec::len).sum::<usize>(), 120 * 1024);
    }
}
