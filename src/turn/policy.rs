//! Where the relay may send: by default only to the SFU's own media addresses, so the embedded TURN
//! server can never be used as an open relay into private networks, onto the host's other services, or
//! towards arbitrary hosts on the internet.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// One allowed peer: an IP address, and optionally a single UDP port on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerRule {
    /// The peer's address.
    pub ip: IpAddr,
    /// The only port allowed on it, or any port when `None`.
    pub port: Option<u16>,
}

impl PeerRule {
    fn matches_ip(&self, ip: IpAddr) -> bool {
        self.ip == ip
    }

    fn matches(&self, addr: SocketAddr) -> bool {
        self.ip == addr.ip() && self.port.is_none_or(|p| p == addr.port())
    }
}

impl fmt::Display for PeerRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(port) => write!(f, "{}", SocketAddr::new(self.ip, port)),
            None => write!(f, "{}", self.ip),
        }
    }
}

/// Why a peer rule did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an IP address or IP:port (use [v6]:port for IPv6 with a port)")]
pub struct PeerRuleError(pub String);

impl FromStr for PeerRule {
    type Err = PeerRuleError;

    fn from_str(s: &str) -> Result<PeerRule, PeerRuleError> {
        let s = s.trim();
        let rule = if let Ok(ip) = s.parse::<IpAddr>() {
            PeerRule {
                ip: ip.to_canonical(),
                port: None,
            }
        } else if let Ok(addr) = s.parse::<SocketAddr>() {
            PeerRule {
                ip: addr.ip().to_canonical(),
                port: Some(addr.port()),
            }
        } else {
            return Err(PeerRuleError(s.to_string()));
        };
        if never_a_peer(rule.ip) || rule.port == Some(0) {
            return Err(PeerRuleError(s.to_string()));
        }
        Ok(rule)
    }
}

/// Addresses no relay ever sends to, whatever the configuration says.
fn never_a_peer(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast(),
        IpAddr::V6(v6) => v6.is_unspecified() || v6.is_multicast(),
    }
}

/// The set of peers an allocation may create permissions and channels for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayPolicy {
    rules: Vec<PeerRule>,
}

impl RelayPolicy {
    /// The default policy: the SFU's media address (`media_udp`, when not a wildcard) and the
    /// addresses it advertises (`public_ips`), each limited to the media port when it is known
    /// (non-zero), plus the operator's `extra` rules. Loopback public IPs count only when the SFU
    /// or the TURN server itself listens on loopback: otherwise relaying to 127.0.0.1 would reach
    /// whatever else runs on the host.
    pub fn for_sfu(
        media_udp: SocketAddr,
        public_ips: &[IpAddr],
        turn_listen: SocketAddr,
        extra: &[PeerRule],
    ) -> RelayPolicy {
        let port = (media_udp.port() != 0).then_some(media_udp.port());
        let loopback_ok = media_udp.ip().is_loopback() || turn_listen.ip().is_loopback();
        let mut rules = Vec::new();
        let media_ip = media_udp.ip().to_canonical();
        if !media_ip.is_unspecified() {
            rules.push(PeerRule { ip: media_ip, port });
        }
        for ip in public_ips {
            let ip = ip.to_canonical();
            if never_a_peer(ip) || (ip.is_loopback() && !loopback_ok) {
                continue;
            }
            rules.push(PeerRule { ip, port });
        }
        rules.extend(extra.iter().copied());
        rules.dedup();
        RelayPolicy { rules }
    }

    /// A policy of exactly these rules.
    pub fn from_rules(rules: Vec<PeerRule>) -> RelayPolicy {
        RelayPolicy { rules }
    }

    /// The rules in force (for the start-up log).
    pub fn rules(&self) -> &[PeerRule] {
        &self.rules
    }

    /// May an allocation hold a permission for `ip`? Permissions are per IP (RFC 8656 §9), so this
    /// only asks whether some rule names the address; ports are enforced on channels and sends.
    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        !never_a_peer(ip) && self.rules.iter().any(|r| r.matches_ip(ip))
    }

    /// May the relay send to `addr` (ChannelBind and Send indications)?
    pub fn allows(&self, addr: SocketAddr) -> bool {
        let addr = SocketAddr::new(addr.ip().to_canonical(), addr.port());
        !never_a_peer(addr.ip()) && addr.port() != 0 && self.rules.iter().any(|r| r.matches(addr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("addr")
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn default_policy_is_the_sfu_port_only() {
        let p = RelayPolicy::for_sfu(
            addr("0.0.0.0:7882"),
            &[ip("203.0.113.5")],
            addr("0.0.0.0:3478"),
            &[],
        );
        assert!(p.allows(addr("203.0.113.5:7882")));
        assert!(!p.allows(addr("203.0.113.5:53")), "other ports of the host");
        assert!(p.allows_ip(ip("203.0.113.5")));
        assert!(!p.allows_ip(ip("10.0.0.1")), "private ranges");
        assert!(!p.allows_ip(ip("198.51.100.7")), "arbitrary hosts");
        assert!(!p.allows_ip(ip("0.0.0.0")), "the wildcard");
    }

    #[test]
    fn loopback_only_when_listening_on_loopback() {
        let public = [ip("127.0.0.1")];
        let open = RelayPolicy::for_sfu(addr("0.0.0.0:7882"), &public, addr("0.0.0.0:3478"), &[]);
        assert!(!open.allows_ip(ip("127.0.0.1")));
        let local = RelayPolicy::for_sfu(addr("127.0.0.1:7882"), &[], addr("127.0.0.1:3478"), &[]);
        assert!(local.allows(addr("127.0.0.1:7882")));
        assert!(!local.allows(addr("127.0.0.1:5432")));
    }

    #[test]
    fn unknown_media_port_allows_any_port_of_the_sfu_ip() {
        let p = RelayPolicy::for_sfu(addr("127.0.0.1:0"), &[], addr("127.0.0.1:0"), &[]);
        assert!(p.allows(addr("127.0.0.1:40000")));
        assert!(!p.allows(addr("127.0.0.2:40000")));
        assert!(!p.allows(addr("127.0.0.1:0")));
    }

    #[test]
    fn extra_rules_and_mapped_addresses() {
        let extra: PeerRule = "[::ffff:192.0.2.9]:5000".parse().expect("rule");
        assert_eq!(extra.ip, ip("192.0.2.9"));
        let p = RelayPolicy::for_sfu(addr("0.0.0.0:7882"), &[], addr("0.0.0.0:3478"), &[extra]);
        assert!(p.allows(addr("192.0.2.9:5000")));
        assert!(p.allows(addr("[::ffff:192.0.2.9]:5000")));
        assert!(!p.allows(addr("192.0.2.9:5001")));
    }

    #[test]
    fn rules_parse_and_refuse_nonsense() {
        assert_eq!(
            "192.0.2.1".parse::<PeerRule>(),
            Ok(PeerRule {
                ip: ip("192.0.2.1"),
                port: None
            })
        );
        assert_eq!(
            "[2001:db8::1]:7882"
                .parse::<PeerRule>()
                .expect("v6")
                .to_string(),
            "[2001:db8::1]:7882"
        );
        for bad in [
            "",
            "host.example",
            "0.0.0.0",
            "224.0.0.1",
            "192.0.2.1:0",
            "1.2.3.4:x",
        ] {
            assert!(bad.parse::<PeerRule>().is_err(), "{bad:?}");
        }
    }
}
