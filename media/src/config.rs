//! SFU settings.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Per-room limits, enforced when participants join and publish.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Most participants in one room.
    pub max_participants: usize,
    /// Most published tracks in one room (all participants together).
    pub max_tracks: usize,
    /// Ceiling on one subscriber's video bitrate, in bits per second, used by layer selection.
    pub max_subscriber_bitrate: u64,
    /// Ceiling on what one room forwards to all its subscribers together, in bits per second:
    /// each subscriber that receives video gets an equal share. It acts through simulcast
    /// layers (a track sent in one layer only keeps flowing), as the per-subscriber one does.
    pub max_room_bitrate: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_participants: 50,
            max_tracks: 150,
            max_subscriber_bitrate: 4_000_000,
            max_room_bitrate: 50_000_000,
        }
    }
}

/// How to start the SFU.
#[derive(Debug, Clone)]
pub struct SfuConfig {
    /// The one UDP address all WebRTC media uses (port 0 picks a free port).
    pub udp: SocketAddr,
    /// Where to listen for passive ICE-TCP, if at all.
    pub ice_tcp: Option<SocketAddr>,
    /// Addresses to advertise in host candidates (NAT 1:1, e.g. a VPS's public address). Empty:
    /// advertise the bound address, which must then not be a wildcard.
    pub public_ips: Vec<IpAddr>,
    /// Per-room limits.
    pub limits: Limits,
    /// Tasks that own peer connections; rooms are spread over them (0: one per core).
    pub workers: usize,
    /// A connection that has not connected after this long is reported failed and torn down.
    pub connect_timeout: Duration,
    /// Move UDP in batches (recvmmsg/GRO in, sendmmsg out) rather than one datagram per
    /// system call.
    pub batched_udp: bool,
}

impl SfuConfig {
    /// Defaults around the given UDP address: no ICE-TCP, no public IPs, default limits.
    pub fn new(udp: SocketAddr) -> Self {
        Self {
            udp,
            ice_tcp: None,
            public_ips: Vec::new(),
            limits: Limits::default(),
            workers: 0,
            connect_timeout: Duration::from_secs(20),
            batched_udp: true,
        }
    }
}
