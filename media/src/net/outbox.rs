//! Outgoing UDP datagrams of one worker turn, handed to the kernel together (sendmmsg on
//! Linux): one system call for many subscribers' packets instead of one each.

use std::net::SocketAddr;
use std::sync::Arc;

use std::time::Instant;

use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};

use crate::latency::DelayHistogram;
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
    /// `received` is when the packet it forwards reached the SFU, for the delay histogram.
    fn push_with(
        &mut self,
        to: &TransportContext,
        received: Option<Instant>,
        build: impl FnOnce(&mut Vec<u8>) -> bool,
    );
}

/// A datagram waiting for the next `sendmmsg`.
struct Queued {
    to: SocketAddr,
    data: Vec<u8>,
    received: Option<Instant>,
}

/// A worker's queue of outgoing datagrams.
pub(crate) struct Outbox {
    transport: Arc<Transport>,
    queue: Vec<Queued>,
    /// Buffers of sent datagrams, reused so the steady state allocates nothing.
    spare: Vec<Vec<u8>>,
    batched: bool,
    delay: DelayHistogram,
}

impl Outbox {
    /// An outbox over `transport`; unbatched, every datagram is sent at once.
    pub fn new(transport: Arc<Transport>, batched: bool) -> Self {
        Self {
            transport,
            queue: Vec::with_capacity(if batched { MAX_QUEUED } else { 0 }),
            spare: Vec::new(),
            batched,
            delay: DelayHistogram::default(),
        }
    }

    /// Queues one datagram the peer connection produced (TCP ones go straight to their
    /// connection's writer).
    #[inline]
    pub fn push(&mut self, msg: TaggedBytesMut) {
        self.push_with(&msg.transport, None, |buf| {
            buf.extend_from_slice(&msg.message);
            true
        });
    }

    /// Sends everything queued. A full socket buffer drops the rest, as a congested link would.
    pub fn flush(&mut self) {
        if self.queue.is_empty() {
            return;
        }
        let mut sent = 0;
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            let fd = self.transport.udp.as_raw_fd();
            for chunk in self.queue.chunks(CHUNK) {
                let n = send_chunk(fd, chunk);
                sent += n;
                if n < chunk.len() {
                    break;
                }
            }
        }
        #[cfg(not(target_os = "linux"))]
        for q in &self.queue {
            if self.transport.udp.try_send_to(&q.data, q.to).is_err() {
                break;
            }
            sent += 1;
        }
        let now = Instant::now();
        for (i, q) in self.queue.drain(..).enumerate() {
            if i < sent
                && let Some(at) = q.received
            {
                self.delay.record(now.saturating_duration_since(at));
            }
            if self.spare.len() < MAX_SPARE {
                let mut buf = q.data;
                buf.clear();
                self.spare.push(buf);
            }
        }
    }

    /// How long forwarded packets spent in the SFU, from arrival at the host to `sendmmsg`.
    pub fn delay(&self) -> &DelayHistogram {
        &self.delay
    }
}

impl Wire for Outbox {
    #[inline]
    fn push_with(
        &mut self,
        to: &TransportContext,
        received: Option<Instant>,
        build: impl FnOnce(&mut Vec<u8>) -> bool,
    ) {
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
            if let Some(at) = received {
                self.delay.record(at.elapsed());
            }
            buf.clear();
            self.spare.push(buf);
            return;
        }
        self.queue.push(Queued {
            to: to.peer_addr,
            data: buf,
            received,
        });
        if self.queue.len() >= MAX_QUEUED {
            self.flush();
        }
    }
}

/// One sendmmsg round for up to [`CHUNK`] datagrams; how many went (fewer if the socket is full).
#[cfg(target_os = "linux")]
fn send_chunk(fd: std::os::fd::RawFd, chunk: &[Queued]) -> usize {
    use std::mem::MaybeUninit;
    let n = chunk.len().min(CHUNK);
    // Only the first `n` slots are filled: a flush usually carries one packet's fan-out, a
    // handful of datagrams, and building or zeroing all of them (~14 KB of addresses and
    // headers) cost more than the rest of the flush.
    let mut addrs = [const { MaybeUninit::<socket2::SockAddr>::uninit() }; CHUNK];
    let mut iovs = [const { MaybeUninit::<libc::iovec>::uninit() }; CHUNK];
    let mut hdrs = [const { MaybeUninit::<libc::mmsghdr>::uninit() }; CHUNK];
    for (i, q) in chunk.iter().take(n).enumerate() {
        let addr = addrs[i].write(socket2::SockAddr::from(q.to));
        let iov = iovs[i].write(libc::iovec {
            iov_base: q.data.as_ptr() as *mut libc::c_void,
            iov_len: q.data.len(),
        });
        // SAFETY: mmsghdr is a plain C struct for which all-zero is a valid value.
        let mut hdr: libc::mmsghdr = unsafe { std::mem::zeroed() };
        hdr.msg_hdr.msg_name = addr.as_ptr() as *mut libc::c_void;
        hdr.msg_hdr.msg_namelen = addr.len();
        hdr.msg_hdr.msg_iov = iov;
        hdr.msg_hdr.msg_iovlen = 1;
        hdrs[i].write(hdr);
    }
    let hdrs = hdrs.as_mut_ptr() as *mut libc::mmsghdr;
    let mut sent = 0;
    while sent < n {
        // SAFETY: `hdrs[..n]` were initialised above and point at `iovs`, `addrs` and the
        // queued buffers, all alive and unmoved for the duration of the call; the kernel only
        // reads them.
        let r = unsafe {
            libc::sendmmsg(
                fd,
                hdrs.add(sent),
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
            std::io::ErrorKind::WouldBlock => return sent,
            std::io::ErrorKind::Interrupted => continue,
            // One unroutable destination must not hold back the others.
            _ => sent += 1,
        }
    }
    n
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
