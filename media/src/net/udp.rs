//! The UDP mux: one port for every peer connection, demultiplexed by STUN ufrag and then by
//! remote address; datagrams from unknown sources are dropped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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

/// Binds the media port as `n` sockets, one per reader, so receiving spreads over the cores
/// (Linux; elsewhere one socket).
///
/// They share the port through `SO_REUSEPORT`, and the kernel hands each remote address's
/// datagrams to always the same one of them. Readers sharing one socket would each take a
/// batch from the same queue and pass them on in whatever order they finish: packets of one
/// stream reordered inside the SFU, which receivers take for loss and ask for again, and which
/// can put the packet after a keyframe ahead of the keyframe a layer switch waits for.
pub(crate) fn bind_group(addr: SocketAddr, n: usize) -> std::io::Result<Vec<UdpSocket>> {
    if !cfg!(target_os = "linux") || n <= 1 {
        return Ok(vec![bind(addr, false)?]);
    }
    if addr.port() != 0 {
        // Sockets that all ask for SO_REUSEPORT share a port silently: a second server started
        // by mistake would take half the calls' media instead of failing to start. One plain
        // bind first finds such a server, which holds the port.
        drop(std::net::UdpSocket::bind(addr)?);
    }
    let first = bind(addr, true)?;
    let addr = first.local_addr()?;
    let mut group = vec![first];
    for _ in 1..n {
        group.push(bind(addr, true)?);
    }
    Ok(group)
}

/// Binds one UDP socket with large buffers.
fn bind(addr: SocketAddr, reuse_port: bool) -> std::io::Result<UdpSocket> {
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    #[cfg(target_os = "linux")]
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    #[cfg(not(target_os = "linux"))]
    let _ = reuse_port;
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
/// The longest a datagram is believed to have waited in the socket buffer: a kernel stamp older
/// than that says the wall clock was stepped, not that the packet waited.
const MAX_QUEUED_FOR: Duration = Duration::from_secs(1);

/// One reading of both clocks, to turn the kernel's receive stamps (wall clock) into
/// [`Instant`]s.
#[derive(Debug, Clone, Copy)]
struct Clocks {
    mono: Instant,
    wall: Duration,
}

impl Clocks {
    fn now() -> Self {
        Self {
            mono: Instant::now(),
            wall: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default(),
        }
    }

    /// When a datagram reached the host, from its kernel stamp (time since the Unix epoch) if
    /// it has one. Arrival times feed the transport-wide-cc feedback that publishers' bandwidth
    /// estimates run on, so they must not include the time the datagram waited for this reader:
    /// on a busy host that wait would read as congestion on the publisher's path.
    fn arrival(&self, kernel: Option<Duration>) -> Instant {
        let waited = kernel.map_or(Duration::ZERO, |k| {
            self.wall.saturating_sub(k).min(MAX_QUEUED_FOR)
        });
        self.mono.checked_sub(waited).unwrap_or(self.mono)
    }
}

/// Reads datagrams in batches and hands each to the worker owning its connection, in the
/// order they arrived (one reader per socket: see [`bind_group`]).
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
        let clocks = Clocks::now();
        for (m, buf) in meta.iter().zip(&storage).take(n) {
            let stride = m.stride.max(1);
            let at = clocks.arrival(m.timestamp);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_stamps_become_instants() {
        let clocks = Clocks::now();
        let ms = Duration::from_millis;
        assert_eq!(clocks.arrival(None), clocks.mono);
        assert_eq!(
            clocks.arrival(Some(clocks.wall - ms(3))),
            clocks.mono - ms(3)
        );
        // A stamp from after the reading (the wall clock was stepped back): now.
        assert_eq!(clocks.arrival(Some(clocks.wall + ms(5))), clocks.mono);
        // One from long before it (stepped forward): at most the longest believable wait.
        assert_eq!(
            clocks.arrival(Some(clocks.wall - ms(60_000))),
            clocks.mono - MAX_QUEUED_FOR
        );
    }

    /// The kernel stamps datagrams as they arrive, so a datagram read late still carries the
    /// time it came in.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_datagram_read_late_keeps_its_arrival_time() {
        let socket = bind("127.0.0.1:0".parse().expect("addr"), false).expect("bind");
        let state = quinn_udp::UdpSocketState::new((&socket).into()).expect("batched UDP");
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind peer");
        // The first socket asking for stamps switches them on for the host through a kernel
        // work item; until it has run, datagrams are stamped when read. (The SFU's socket lives
        // for the whole process, so this is the first few microseconds of a server's life.)
        tokio::time::sleep(Duration::from_millis(20)).await;
        let sent = Instant::now();
        peer.send_to(b"media", socket.local_addr().expect("addr"))
            .expect("send");
        tokio::time::sleep(Duration::from_millis(50)).await;
        socket.readable().await.expect("readable");
        let mut buf = vec![0u8; MAX_DATAGRAM * state.gro_segments().max(1)];
        let mut meta = [quinn_udp::RecvMeta::default()];
        let n = socket
            .try_io(tokio::io::Interest::READABLE, || {
                state.recv(
                    (&socket).into(),
                    &mut [std::io::IoSliceMut::new(&mut buf)],
                    &mut meta,
                )
            })
            .expect("recv");
        assert_eq!((n, meta[0].len), (1, 5));
        let at = Clocks::now().arrival(meta[0].timestamp);
        let waited = at.elapsed();
        assert!(
            at >= sent.checked_sub(Duration::from_millis(5)).expect("instant")
                && waited >= Duration::from_millis(40),
            "stamped {waited:?} ago, read 50 ms after it was sent"
        );
    }

    /// Each remote address's datagrams reach one socket of the group, in the order sent, and
    /// the addresses spread over the sockets.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_peer_keeps_to_one_socket_of_the_group() {
        let group = bind_group("127.0.0.1:0".parse().expect("addr"), 2).expect("bind");
        let port = group[0].local_addr().expect("addr").port();
        assert_eq!(group[1].local_addr().expect("addr").port(), port);
        let to: SocketAddr = ([127, 0, 0, 1], port).into();
        let peers: Vec<std::net::UdpSocket> = (0..32)
            .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").expect("bind peer"))
            .collect();
        const EACH: u16 = 50;
        for n in 0..EACH {
            for p in &peers {
                p.send_to(&n.to_be_bytes(), to).expect("send");
            }
        }
        // peer address -> (socket index, numbers in arrival order)
        let mut seen: std::collections::HashMap<SocketAddr, (usize, Vec<u16>)> = Default::default();
        let mut buf = [0u8; 16];
        let mut total = 0;
        while total < peers.len() * EACH as usize {
            let mut progressed = false;
            for (i, socket) in group.iter().enumerate() {
                while let Ok((len, from)) = socket.try_recv_from(&mut buf) {
                    assert_eq!(len, 2);
                    let entry = seen.entry(from).or_insert((i, Vec::new()));
                    assert_eq!(entry.0, i, "{from} reached two sockets of the group");
                    entry.1.push(u16::from_be_bytes([buf[0], buf[1]]));
                    total += 1;
                    progressed = true;
                }
            }
            if !progressed {
                tokio::time::timeout(Duration::from_secs(2), group[0].readable())
                    .await
                    .ok();
            }
        }
        for (from, (_, numbers)) in &seen {
            assert_eq!(*numbers, (0..EACH).collect::<Vec<_>>(), "from {from}");
        }
        let on_first = seen.values().filter(|(i, _)| *i == 0).count();
        assert!(
            (1..peers.len()).contains(&on_first),
            "{on_first} of {} peers on the first socket",
            peers.len()
        );
    }

    /// A port some other server holds is refused, even to a group sharing it.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_port_in_use_is_refused() {
        let other = bind_group("127.0.0.1:0".parse().expect("addr"), 2).expect("bind");
        let taken = other[0].local_addr().expect("addr");
        let err = bind_group(taken, 2).expect_err("the port is in use");
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    }
}
