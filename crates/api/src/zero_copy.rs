//! A TCP stream that sends mapped blob windows with `sendfile(2)` to remote peers.
//!
//! hyper writes a response body's `Bytes` as they are (vectored writes, no copy). When such a
//! slice is a window the blob store mapped ([`MappedRegions`]), [`ZeroCopyStream`] hands the
//! kernel the file and offset instead, so blob bytes go from the page cache to the socket without
//! being copied through, or faulted into, this process. Every other write is a plain write, and
//! so is every write to a peer on this host (see [`ZeroCopyStream::new`]).

use std::io;
use std::net::IpAddr;
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
    /// `None` for a peer on this host: its windows are copied (see [`ZeroCopyStream::new`]).
    regions: Option<Arc<MappedRegions>>,
}

/// The send buffer of a connection to a peer on this host (the kernel doubles it for overhead).
const LOCAL_SEND_BUFFER: libc::c_int = 128 << 10;

impl ZeroCopyStream {
    /// A connection whose mapped windows go out with sendfile, unless its peer is on this host
    /// and `copy_local` is set.
    ///
    /// Over loopback nothing is saved by not copying: the peer's kernel copies every byte out of
    /// the socket either way, from wherever the sent bytes live. With sendfile they live in page
    /// cache pages, cold in the CPU's caches; copied by `write` into a send buffer kept small,
    /// the bytes in flight stay cached until the peer reads them. On two cores shared with the
    /// client that doubles a local pull's MB/s (bench/RESULTS.md). Across a network the copy would be
    /// pure cost and a small buffer would cap throughput on any real round-trip time, so remote
    /// peers get sendfile and the kernel's send buffer autotuning.
    pub fn new(tcp: TcpStream, regions: Arc<MappedRegions>, copy_local: bool) -> ZeroCopyStream {
        let local = copy_local
            && match (tcp.local_addr(), tcp.peer_addr()) {
                (Ok(here), Ok(there)) => on_this_host(here.ip(), there.ip()),
                _ => false,
            };
        if local {
            let size = LOCAL_SEND_BUFFER;
            // SAFETY: the socket is open and `size` is a valid c_int for the option's length.
            let set = unsafe {
                let ptr = (&raw const size).cast();
                let len = size_of::<libc::c_int>() as libc::socklen_t;
                libc::setsockopt(tcp.as_raw_fd(), libc::SOL_SOCKET, libc::SO_SNDBUF, ptr, len)
            };
            if set != 0 {
                tracing::debug!(error = %io::Error::last_os_error(), "could not size a local connection's send buffer");
            }
        }
        ZeroCopyStream { tcp, regions: (!local).then_some(regions) }
    }

    fn lookup(&self, bytes: &[u8]) -> Option<FileSlice> {
        self.regions.as_ref()?.lookup(bytes)
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

/// Whether a peer at `there` reaching us at `here` is on this host: a loopback address (IPv4
/// ones too when a dual-stack socket shows them as `::ffff:127.x.y.z`), or our own address.
fn on_this_host(here: IpAddr, there: IpAddr) -> bool {
    there.to_canonical().is_loopback() || there.to_canonical() == here.to_canonical()
}

impl AsyncRead for ZeroCopyStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for ZeroCopyStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if let Some(slice) = self.lookup(buf) {
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
        if let Some(slice) = self.lookup(&bufs[first]) {
            return self.poll_sendfile(cx, &slice, bufs[first].len());
        }
        // Plain slices up to the next mapped one go out in one writev.
        let plain = bufs[first..].iter().take_while(|b| self.lookup(b).is_none()).count();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_on_this_host_are_told_apart_from_remote_ones() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let node = ip("10.0.3.7");
        for local in ["127.0.0.1", "127.0.0.2", "::1", "::ffff:127.0.0.1", "10.0.3.7", "::ffff:10.0.3.7"] {
            assert!(on_this_host(node, ip(local)), "{local}");
        }
        for remote in ["10.0.3.8", "::ffff:10.0.3.8", "192.168.1.1", "fe80::1", "::ffff:192.168.1.1"] {
            assert!(!on_this_host(node, ip(remote)), "{remote}");
        }
        assert!(on_this_host(ip("::ffff:127.0.0.1"), ip("::ffff:127.0.0.2")), "dual-stack loopback");
    }
}
