//! NAT loopback for the SFU's public address. On a VPS behind a provider's 1:1 NAT the public IP
//! (`MESCON_PUBLIC_IP`) is on no interface of the host, so a relay sending to the SFU's public
//! candidate would need the provider to hairpin the packet back in, which not every provider does.
//! The SFU runs on this very host, so relays hand such packets straight to its local address, and
//! present its answers as coming from the public address, the one the client holds a permission for.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::net::UdpSocket;
use webrtc_util::Conn;

/// One public media address of the SFU and where the SFU really listens for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shortcut {
    /// The advertised address (public IP, media port).
    pub public: SocketAddr,
    /// The local address that reaches the same socket.
    pub local: SocketAddr,
}

/// The shortcuts for the SFU at `media_udp` advertised on `public_ips`: one per public IP of the
/// relays' family that is not an address of this host. None while the media port is unknown (0).
pub fn shortcuts(media_udp: SocketAddr, public_ips: &[IpAddr], relay_ip: IpAddr) -> Vec<Shortcut> {
    let port = media_udp.port();
    if port == 0 {
        return Vec::new();
    }
    let local_ip = match media_udp.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    public_ips
        .iter()
        .map(|ip| ip.to_canonical())
        .filter(|ip| ip.is_ipv4() == relay_ip.is_ipv4() && ip.is_ipv4() == local_ip.is_ipv4())
        .filter(|ip| !is_local(*ip))
        .map(|ip| Shortcut {
            public: SocketAddr::new(ip, port),
            local: SocketAddr::new(local_ip, port),
        })
        .collect()
}

/// Whether `ip` is an address of this host (a socket can bind to it).
fn is_local(ip: IpAddr) -> bool {
    std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

/// A relay socket that takes the shortcuts.
#[derive(Debug)]
pub struct ShortcutConn {
    socket: UdpSocket,
    shortcuts: Arc<[Shortcut]>,
    /// Local SFU address → the public address last used for it, to name answers.
    back: Mutex<HashMap<SocketAddr, SocketAddr>>,
}

impl ShortcutConn {
    /// Wraps a bound relay socket.
    pub fn new(socket: UdpSocket, shortcuts: Arc<[Shortcut]>) -> ShortcutConn {
        ShortcutConn {
            socket,
            shortcuts,
            back: Mutex::new(HashMap::new()),
        }
    }
}

#[async_trait]
impl Conn for ShortcutConn {
    async fn connect(&self, addr: SocketAddr) -> webrtc_util::Result<()> {
        Ok(self.socket.connect(addr).await?)
    }

    async fn recv(&self, buf: &mut [u8]) -> webrtc_util::Result<usize> {
        Ok(self.socket.recv(buf).await?)
    }

    async fn recv_from(&self, buf: &mut [u8]) -> webrtc_util::Result<(usize, SocketAddr)> {
        let (n, src) = self.socket.recv_from(buf).await?;
        let public = self.back.lock().ok().and_then(|b| b.get(&src).copied());
        Ok((n, public.unwrap_or(src)))
    }

    async fn send(&self, buf: &[u8]) -> webrtc_util::Result<usize> {
        Ok(self.socket.send(buf).await?)
    }

    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> webrtc_util::Result<usize> {
        let target = match self.shortcuts.iter().find(|s| s.public == target) {
            Some(s) => {
                if let Ok(mut back) = self.back.lock() {
                    back.insert(s.local, s.public);
                }
                s.local
            }
            None => target,
        };
        Ok(self.socket.send_to(buf, target).await?)
    }

    fn local_addr(&self) -> webrtc_util::Result<SocketAddr> {
        Ok(self.socket.local_addr()?)
    }

    fn remote_addr(&self) -> Option<SocketAddr> {
        None
    }

    async fn close(&self) -> webrtc_util::Result<()> {
        Ok(())
    }

    fn as_any(&self) -> &(dyn std::any::Any + Send + Sync) {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortcuts_only_for_public_ips_that_are_not_on_this_host() {
        let media: SocketAddr = "0.0.0.0:7882".parse().expect("addr");
        let relay: IpAddr = "0.0.0.0".parse().expect("ip");
        let public: Vec<IpAddr> = vec![
            "127.0.0.1".parse().expect("ip"),
            "2001:db8::1".parse().expect("ip"),
            "192.0.2.10".parse().expect("ip"),
        ];
        assert_eq!(
            shortcuts(media, &public, relay),
            vec![Shortcut {
                public: "192.0.2.10:7882".parse().expect("addr"),
                local: "127.0.0.1:7882".parse().expect("addr"),
            }],
            "loopback is local, IPv6 is another family"
        );
        let unknown_port: SocketAddr = "0.0.0.0:0".parse().expect("addr");
        assert!(shortcuts(unknown_port, &public, relay).is_empty());
    }

    #[tokio::test]
    async fn packets_for_the_public_address_reach_the_local_sfu_and_answers_come_back_named() {
        let sfu = UdpSocket::bind("127.0.0.1:0").await.expect("sfu");
        let local = sfu.local_addr().expect("addr");
        // 127.0.0.2 stands in for the public IP: were the shortcut not taken, nothing would answer.
        let public = SocketAddr::new("127.0.0.2".parse().expect("ip"), local.port());
        let relay = ShortcutConn::new(
            UdpSocket::bind("127.0.0.1:0").await.expect("relay"),
            Arc::from(vec![Shortcut { public, local }]),
        );
        relay.send_to(b"stun", public).await.expect("send");
        let mut buf = [0u8; 16];
        let (n, from) = sfu.recv_from(&mut buf).await.expect("sfu receives");
        assert_eq!(&buf[..n], b"stun");
        sfu.send_to(b"answer", from).await.expect("answer");
        let (n, src) = relay.recv_from(&mut buf).await.expect("relay receives");
        assert_eq!(&buf[..n], b"answer");
        assert_eq!(src, public, "the answer is named after the public address");
    }
}
