//! The UDP mux: one socket for every peer connection, demultiplexed by STUN ufrag and then by
//! remote address; datagrams from unknown sources are dropped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use rtc::shared::TransportProtocol;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::router::Router;
use super::stun;
use crate::worker::{Datagram, Input};

/// Socket buffer size asked of the kernel: bursts of keyframes to many subscribers.
const SOCKET_BUFFER: usize = 4 << 20;
/// Largest datagram we accept (WebRTC keeps packets under the path MTU).
const MAX_DATAGRAM: usize = 2048;

/// Binds the shared UDP socket with large buffers.
pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    // The kernel silently caps these at net.core.{r,w}mem_max, and small buffers drop bursts
    // (a keyframe to many subscribers) long before the CPU is busy: say so once, at start.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    for (dir, sysctl, got) in [
        ("receive", "net.core.rmem_max", socket.recv_buffer_size()),
        ("send", "net.core.wmem_max", socket.send_buffer_size()),
    ] {
        // Linux reports twice what it grants (the other half is its bookkeeping).
        let granted = got.map_or(0, |n| if cfg!(target_os = "linux") { n / 2 } else { n });
        if granted < SOCKET_BUFFER {
            tracing::warn!(
                granted_kib = granted / 1024,
                wanted_kib = SOCKET_BUFFER / 1024,
                "the media socket's {dir} buffer is small; raise {sysctl} (docs/deploy.md)"
            );
        }
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

/// Datagrams taken from the kernel per system call (recvmmsg).
const BATCH: usize = 16;

/// Reads datagrams in batches and hands each to the worker owning its connection.
///
/// Several readers may share the socket; each datagram goes to exactly one of them.
pub(crate) async fn read_loop(
    socket: Arc<UdpSocket>,
    router: Arc<Router>,
    workers: Arc<[mpsc::Sender<Input>]>,
    batched: bool,
) {
    if !batched {
        return read_one_by_one(socket, router, workers).await;
    }
    let state = match quinn_udp::UdpSocketState::new((&*socket).into()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "batched UDP unavailable, reading one datagram at a time");
            return read_one_by_one(socket, router, workers).await;
        }
    };
    // With GRO the kernel may hand over several datagrams of `stride` bytes in one buffer.
    let slot = MAX_DATAGRAM * state.gro_segments().max(1);
    let mut storage: Vec<Vec<u8>> = (0..BATCH).map(|_| vec![0u8; slot]).collect();
    let mut meta = [quinn_udp::RecvMeta::default(); BATCH];
    loop {
        if socket.readable().await.is_err() {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        }
        let received = socket.try_io(tokio::io::Interest::READABLE, || {
            let mut bufs: [std::io::IoSliceMut<'_>; BATCH] = {
                let mut it = storage.iter_mut();
                std::array::from_fn(|_| match it.next() {
                    Some(b) => std::io::IoSliceMut::new(&mut b[..]),
                    None => std::io::IoSliceMut::new(&mut []),
                })
            };
            state.recv((&*socket).into(), &mut bufs, &mut meta)
        });
        let n = match received {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => continue,
            Err(e) => {
                tracing::warn!(error = %e, "udp receive failed");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let at = Instant::now();
        for (m, buf) in meta.iter().zip(&storage).take(n) {
            let stride = m.stride.max(1);
            for datagram in buf[..m.len.min(buf.len())].chunks(stride) {
                dispatch(&router, &workers, datagram, m.addr, at);
            }
        }
    }
}

/// Routes one datagram to its worker; unknown sources are dropped.
#[inline]
fn dispatch(
    router: &Router,
    workers: &[mpsc::Sender<Input>],
    data: &[u8],
    peer: SocketAddr,
    at: Instant,
) {
    let ufrag = stun::local_ufrag(data);
    let Some(route) = router.lookup((peer, TransportProtocol::UDP), ufrag) else {
        return;
    };
    let Some(tx) = workers.get(route.worker) else {
        return;
    };
    // A full queue means the worker is overloaded: drop, as a congested link would.
    let _ = tx.try_send(Input::Datagram(Datagram {
        conn: route.conn,
        peer,
        proto: TransportProtocol::UDP,
        data: BytesMut::from(data),
        at,
    }));
}

/// Fallback reader for platforms without batched receive.
async fn read_one_by_one(
    socket: Arc<UdpSocket>,
    router: Arc<Router>,
    workers: Arc<[mpsc::Sender<Input>]>,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, peer) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            // ICMP errors surface as receive errors on some systems; they say nothing about
            // the socket itself.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => continue,
            Err(e) => {
                tracing::warn!(error = %e, "udp receive failed");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        dispatch(&router, &workers, &buf[..n], peer, Instant::now());
    }
}
