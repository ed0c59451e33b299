//! Relayed transport addresses: each allocation gets a UDP socket on a random free port of the
//! configured range, bound to `relay-ip` and announced to the client as `external-ip`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ::turn::relay::RelayAddressGenerator;
use async_trait::async_trait;
use tokio::net::UdpSocket;
use webrtc_util::Conn;

use super::shortcut::{Shortcut, ShortcutConn};

/// How many random ports to try before answering 508 Insufficient Capacity.
const TRIES: usize = 32;

/// Binds relay sockets in a port range.
#[derive(Debug, Clone)]
pub struct PortRangeRelays {
    /// Public SFU addresses to deliver locally (see [`super::shortcut`]).
    pub shortcuts: Arc<[Shortcut]>,
    /// The local address relay sockets bind to.
    pub bind_ip: IpAddr,
    /// The address clients are told (XOR-RELAYED-ADDRESS).
    pub external_ip: IpAddr,
    /// First port.
    pub min_port: u16,
    /// Last port (inclusive).
    pub max_port: u16,
}

#[async_trait]
impl RelayAddressGenerator for PortRangeRelays {
    fn validate(&self) -> Result<(), ::turn::Error> {
        if self.min_port == 0 || self.min_port > self.max_port {
            return Err(::turn::Error::ErrMaxPortLessThanMinPort);
        }
        Ok(())
    }

    async fn allocate_conn(
        &self,
        use_ipv4: bool,
        requested_port: u16,
    ) -> Result<(Arc<dyn Conn + Send + Sync>, SocketAddr), ::turn::Error> {
        if use_ipv4 != self.bind_ip.is_ipv4() {
            // One family per server: relaying between families is not something the SFU needs.
            return Err(::turn::Error::ErrInvalidRequestedFamilyValue);
        }
        let ports: Vec<u16> = if requested_port != 0 {
            vec![requested_port]
        } else {
            (0..TRIES)
                .map(|_| {
                    let span = u32::from(self.max_port - self.min_port) + 1;
                    let offset = rand::random::<u32>() % span;
                    // offset < span ≤ 65535, so the sum stays within max_port.
                    self.min_port + offset as u16
                })
                .collect()
        };
        for port in ports {
            if let Ok(socket) = UdpSocket::bind(SocketAddr::new(self.bind_ip, port)).await {
                let conn: Arc<dyn Conn + Send + Sync> = if self.shortcuts.is_empty() {
                    Arc::new(socket)
                } else {
                    Arc::new(ShortcutConn::new(socket, self.shortcuts.clone()))
                };
                return Ok((conn, SocketAddr::new(self.external_ip, port)));
            }
        }
        Err(::turn::Error::ErrMaxRetriesExceeded)
    }
}

/// The local address this host would send from to reach `peer`: a connected UDP socket learns it
/// from the routing table without sending anything.
pub fn route_source(peer: IpAddr) -> Option<IpAddr> {
    let bind: SocketAddr = if peer.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    let socket = std::net::UdpSocket::bind(bind).ok()?;
    socket.connect(SocketAddr::new(peer, 9)).ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn relays_come_from_the_range_and_report_the_external_ip() {
        let relays = PortRangeRelays {
            shortcuts: Arc::from(Vec::new()),
            bind_ip: "127.0.0.1".parse().expect("ip"),
            external_ip: "203.0.113.5".parse().expect("ip"),
            min_port: 50_000,
            max_port: 50_999,
        };
        relays.validate().expect("valid");
        let (conn, addr) = relays.allocate_conn(true, 0).await.expect("a free port");
        assert_eq!(addr.ip(), relays.external_ip);
        assert!((50_000..=50_999).contains(&addr.port()));
        assert_eq!(conn.local_addr().expect("local").port(), addr.port());
        assert!(
            relays.allocate_conn(false, 0).await.is_err(),
            "no IPv6 relay on a v4 server"
        );
    }

    #[test]
    fn route_source_of_loopback_is_loopback() {
        assert_eq!(
            route_source("127.0.0.1".parse().expect("ip")),
            Some("127.0.0.1".parse().expect("ip"))
        );
    }
}
