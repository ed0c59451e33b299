//! Outgoing UDP datagrams of one worker turn, handed to the kernel together (sendmmsg on
//! Linux): one system call for many subscribers' packets instead of one each.

use std::net::SocketAddr;
use std::sync::Arc;

use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};

use crate::peer::Transport;

/// Datagrams queued before a flush is forced, bounding the delay a full turn can add.
const MAX_QUEUED: usize = 1024;
/// Buffers kept for reuse: enough for a busy turn without holding a whole burst's worth.
const MAX_SPARE: usize = 256;
/// Room in a fresh datagram buffer: a full-size packet with its SRTP tag.
const DATAGRAM_CAPACITY: usize = 1500;
/// Datagrams per sendmmsg call.
#[cfg(target_os = "linux")]
const CHUNK: usize = 64;

/// Somewhere datagrams built in place can go: the worker's [`Outbox`], or a benchmark's sink.
pub(crate) trait Wire {
    /// Builds one datagram for `to` in an empty buffer; `build` returns false to abandon it.
    fn push_with(&mut self, to: &TransportContext, build: impl FnOnce(&mut Vec<u8>) -> bool);
}

/// A worker's queue of outgoing datagrams.
pub(crate) struct Outbox {
    transport: Arc<Transport>,
    queue: Vec<(SocketAddr, Vec<u8>)>,
    /// Buffers of sent datagrams, reused so the steady state allocates nothing.
    spare: Vec<Vec<u8>>,
    batched: bool,
}

impl Outbox {
    /// An outbox over `transport`; unbatched, every datagram is sent at once.
    pub fn new(transport: Arc<Transport>, batched: bool) -> Self {
        Self {
            transport,
            queue: Vec::with_capacity(if batched { MAX_QUEUED } else { 0 }),
            spare: Vec::new(),
            batched,
        }
    }

    /// Queues one datagram the peer connection produced (TCP ones go straight to their
    /// connection's writer).
    #[inline]
    pub fn push(&mut self, msg: TaggedBytesMut) {
        self.push_with(&msg.transport, |buf| {
            buf.extend_from_slice(&msg.message);
            true
        });
    }

    /// Sends everything queued. A full socket buffer drops the rest, as a congested link would.
    pub fn flush(&mut self) {
        if self.queue.is_empty() {
            return;
        }
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            let fd = self.transport.udp.as_raw_fd();
            for chunk in self.queue.chunks(CHUNK) {
                if !send_chunk(fd, chunk) {
                    break;
                }
            }
        }
        #[cfg(not(target_os = "linux"))]
        for (to, data) in &self.queue {
            let _ = self.transport.udp.try_send_to(data, *to);
        }
        for (_, mut buf) in self.queue.drain(..) {
            if self.spare.len() < MAX_SPARE {
                buf.clear();
                self.spare.push(buf);
            }
        }
    }
}

impl Wire for Outbox {
    #[inline]
    fn push_with(&mut self, to: &TransportContext, build: impl FnOnce(&mut Vec<u8>) -> bool) {
        let mut buf = self
            .spare
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(DATAGRAM_CAPACITY));
        if !build(&mut buf) {
            buf.clear();
            self.spare.push(buf);
            return;
        }
        if !self.batched || to.transport_protocol != TransportProtocol::UDP {
            self.transport.send(to, &buf);
            buf.clear();
            self.spare.push(buf);
            return;
        }
        self.queue.push((to.peer_addr, buf));
        if self.queue.len() >= MAX_QUEUED {
            self.flush();
        }
    }
}

/// One sendmmsg round for up to [`CHUNK`] datagrams; false if the socket is full.
#[cfg(target_os = "linux")]
fn send_chunk(fd: std::os::fd::RawFd, chunk: &[(SocketAddr, Vec<u8>)]) -> bool {
    let n = chunk.len().min(CHUNK);
    let addrs: [socket2::SockAddr; CHUNK] =
        std::array::from_fn(|i| socket2::SockAddr::from(chunk.get(i).map_or(chunk[0].0, |c| c.0)));
    // SAFETY: iovec and mmsghdr are plain C structs for which all-zero is a valid value.
    let mut iovs: [libc::iovec; CHUNK] = unsafe { std::mem::zeroed() };
    let mut hdrs: [libc::mmsghdr; CHUNK] = unsafe { std::mem::zeroed() };
    for i in 0..n {
        iovs[i].iov_base = chunk[i].1.as_ptr() as *mut libc::c_void;
        iovs[i].iov_len = chunk[i].1.len();
        hdrs[i].msg_hdr.msg_name = addrs[i].as_ptr() as *mut libc::c_void;
        hdrs[i].msg_hdr.msg_namelen = addrs[i].len();
        hdrs[i].msg_hdr.msg_iov = &mut iovs[i];
        hdrs[i].msg_hdr.msg_iovlen = 1;
    }
    let mut sent = 0;
    while sent < n {
        // SAFETY: `hdrs[sent..n]` point at `iovs`, `addrs` and the queued buffers, all alive
        // and unmoved for the duration of the call; the kernel only reads them.
        let r = unsafe {
            libc::sendmmsg(
                fd,
                hdrs.as_mut_ptr().add(sent),
                (n - sent) as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if r > 0 {
            sent += r as usize;
            continue;
        }
        let err = std::io::Error::last_os_error();
        match err.kind() {
            std::io::ErrorKind::WouldBlock => return false,
            std::io::ErrorKind::Interrupted => continue,
            // One unroutable destination must not hold back the others.
            _ => sent += 1,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::router::Router;
    use crate::peer::Candidates;
    use std::time::{Duration, Instant};

    fn datagram(to: SocketAddr, i: u32) -> TaggedBytesMut {
        TaggedBytesMut {
            now: Instant::now(),
            transport: TransportContext {
                local_addr: to,
                peer_addr: to,
                ecn: None,
                transport_protocol: TransportProtocol::UDP,
            },
            message: bytes::BytesMut::from(&i.to_be_bytes()[..]),
        }
    }

    #[tokio::test]
    async fn batches_reach_every_destination_in_order() {
        let udp = Arc::new(
            tokio::net::UdpSocket::bind("127.0.0.1:0")
                .await
                .expect("bind"),
        );
        let transport = Arc::new(Transport {
            udp,
            candidates: Candidates {
                udp_port: 0,
                tcp_port: None,
                ips: vec![],
            },
            router: Arc::new(Router::default()),
        });
        let mut receivers = Vec::new();
        for _ in 0..3 {
            receivers.push(
                tokio::net::UdpSocket::bind("127.0.0.1:0")
                    .await
                    .expect("bind"),
            );
        }
        let mut out = Outbox::new(transport, true);
        // More than one sendmmsg chunk, interleaved over three destinations.
        for i in 0..150u32 {
            let to = receivers[i as usize % 3].local_addr().expect("addr");
            out.push(datagram(to, i));
        }
        out.flush();
        for (r, rx) in receivers.iter().enumerate() {
            let mut buf = [0u8; 16];
            for k in 0..50u32 {
                let (n, _) = tokio::time::timeout(Duration::from_secs(2), rx.recv_from(&mut buf))
                    .await
                    .expect("datagram arrives")
                    .expect("recv");
                assert_eq!(n, 4);
                assert_eq!(
                    u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]),
                    k * 3 + r as u32
                );
            }
        }
    }
}
