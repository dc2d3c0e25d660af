//! A TCP stream that sends mapped blob windows with `sendfile(2)`.
//!
//! hyper writes a response body's `Bytes` as they are (vectored writes, no copy). When such a
//! slice is a window the blob store mapped ([`MappedRegions`]), [`ZeroCopyStream`] hands the
//! kernel the file and offset instead, so blob bytes go from the page cache to the socket without
//! being copied through, or faulted into, this process. Every other write is a plain write.

use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use blobs::{FileSlice, MappedRegions};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

/// The peer of a connection, in each request's extensions as `ConnectInfo<Peer>`.
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub std::net::SocketAddr);

pub struct ZeroCopyStream {
    tcp: TcpStream,
    regions: Arc<MappedRegions>,
}

impl ZeroCopyStream {
    pub fn new(tcp: TcpStream, regions: Arc<MappedRegions>) -> ZeroCopyStream {
        ZeroCopyStream { tcp, regions }
    }

    fn poll_sendfile(&self, cx: &mut Context<'_>, slice: &FileSlice, len: usize) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.tcp.poll_write_ready(cx))?;
            let sent = self.tcp.try_io(Interest::WRITABLE, || {
                let mut offset = libc::off_t::try_from(slice.offset).map_err(io::Error::other)?;
                // SAFETY: both descriptors are open for the duration of the call (the socket is
                // ours, the file is held by `slice`), and `offset` is a valid pointer.
                let n = unsafe { libc::sendfile(self.tcp.as_raw_fd(), slice.file.as_raw_fd(), &mut offset, len) };
                if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
            });
            match sent {
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncRead for ZeroCopyStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for ZeroCopyStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if let Some(slice) = self.regions.lookup(buf) {
            return self.poll_sendfile(cx, &slice, buf.len());
        }
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let Some(first) = bufs.iter().position(|b| !b.is_empty()) else { return Poll::Ready(Ok(0)) };
        if let Some(slice) = self.regions.lookup(&bufs[first]) {
            return self.poll_sendfile(cx, &slice, bufs[first].len());
        }
        // Plain slices up to the next mapped one go out in one writev.
        let plain = bufs[first..].iter().take_while(|b| self.regions.lookup(b).is_none()).count();
        Pin::new(&mut self.tcp).poll_write_vectored(cx, &bufs[first..first + plain])
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}
