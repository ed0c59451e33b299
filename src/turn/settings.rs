//! `turn.conf`: the embedded TURN server's settings beyond its listen address. A small `key = value`
//! format (one setting a line, `#` starts a comment line, keys as coturn spells them where coturn has
//! the same setting), so operators who know coturn recognise it. Unknown keys, repeated keys and bad
//! values are errors that name the file and line: a typo must never silently fall back to a default.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use super::policy::PeerRule;

/// The first port of the default relay range (the IANA dynamic range, as coturn uses).
pub const DEFAULT_MIN_PORT: u16 = 49152;
/// The last port of the default relay range.
pub const DEFAULT_MAX_PORT: u16 = 65535;

/// The parsed settings, with defaults for everything the file leaves out.
#[derive(Clone, PartialEq, Eq)]
pub struct TurnSettings {
    /// The REALM of long-term authentication.
    pub realm: String,
    /// Overrides `MESCON_TURN_LISTEN` when TURN is on.
    pub listen: Option<SocketAddr>,
    /// Overrides `MESCON_TURN_SECRET` (and the generated secret); base64-decoded, ≥ 32 bytes.
    pub static_auth_secret: Option<Vec<u8>>,
    /// The address told to clients as their relayed address (XOR-RELAYED-ADDRESS).
    pub external_ip: Option<IpAddr>,
    /// The local address relay sockets bind to.
    pub relay_ip: Option<IpAddr>,
    /// First relay port.
    pub min_port: u16,
    /// Last relay port (inclusive).
    pub max_port: u16,
    /// Concurrent allocations per Mescon user.
    pub user_quota: usize,
    /// Concurrent allocations in total.
    pub total_quota: usize,
    /// Peers allowed in addition to the SFU's own addresses.
    pub allowed_peers: Vec<PeerRule>,
}

impl Default for TurnSettings {
    fn default() -> TurnSettings {
        TurnSettings {
            realm: "mescon".into(),
            listen: None,
            static_auth_secret: None,
            external_ip: None,
            relay_ip: None,
            min_port: DEFAULT_MIN_PORT,
            max_port: DEFAULT_MAX_PORT,
            user_quota: 10,
            total_quota: 1000,
            allowed_peers: Vec::new(),
        }
    }
}

impl std::fmt::Debug for TurnSettings {
    // Hand-written so that the secret never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnSettings")
            .field("realm", &self.realm)
            .field("listen", &self.listen)
            .field("static_auth_secret", &self.static_auth_secret.is_some())
            .field("external_ip", &self.external_ip)
            .field("relay_ip", &self.relay_ip)
            .field("ports", &(self.min_port..=self.max_port))
            .field("user_quota", &self.user_quota)
            .field("total_quota", &self.total_quota)
            .field("allowed_peers", &self.allowed_peers)
            .finish()
    }
}

/// A turn.conf that cannot be used, with where and why.
#[derive(Debug, thiserror::Error)]
#[error("{}{}: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct TurnConfigError {
    /// The file.
    pub path: PathBuf,
    /// The 1-based line, when the problem is on one.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

/// The keys this parser knows, for the "unknown key" message.
const KEYS: &[&str] = &[
    "realm",
    "listening-address",
    "static-auth-secret",
    "external-ip",
    "relay-ip",
    "min-port",
    "max-port",
    "user-quota",
    "total-quota",
    "allowed-peer-ip",
];

/// coturn keys for TURN over TLS, refused with an explanation rather than as unknown.
const TLS_KEYS: &[&str] = &[
    "cert",
    "pkey",
    "tls-listening-port",
    "alt-tls-listening-port",
    "no-tls",
    "no-dtls",
];

impl TurnSettings {
    /// Reads and parses the file at `path`.
    pub fn load(path: &Path) -> Result<TurnSettings, TurnConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| TurnConfigError {
            path: path.to_path_buf(),
            line: None,
            message: format!("cannot read: {e}"),
        })?;
        TurnSettings::parse(&text, path)
    }

    /// Parses the text of a turn.conf; `path` only names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<TurnSettings, TurnConfigError> {
        let mut settings = TurnSettings::default();
        let mut seen: Vec<&str> = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let err = |message: String| TurnConfigError {
                path: path.to_path_buf(),
                line: Some(index + 1),
                message,
            };
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(err(format!(
                    "expected `key = value`, found `{line}` (flags without a value are not supported)"
                )));
            };
            let (key, value) = (key.trim(), value.trim());
            if TLS_KEYS.contains(&key) {
                return Err(err(format!(
                    "`{key}`: TURN over TLS is not supported by the embedded server; \
                     clients that cannot use UDP reach it over TCP on the same port"
                )));
            }
            let Some(known) = KEYS.iter().copied().find(|k| *k == key) else {
                return Err(err(format!(
                    "unknown key `{key}`; known keys: {}",
                    KEYS.join(", ")
                )));
            };
            if known != "allowed-peer-ip" {
                if seen.contains(&known) {
                    return Err(err(format!("`{key}` is set twice")));
                }
                seen.push(known);
            }
            if value.is_empty() {
                return Err(err(format!("`{key}` needs a value")));
            }
            settings.set(known, value).map_err(err)?;
        }
        if settings.min_port > settings.max_port {
            return Err(TurnConfigError {
                path: path.to_path_buf(),
                line: None,
                message: format!(
                    "min-port {} is above max-port {}",
                    settings.min_port, settings.max_port
                ),
            });
        }
        if settings.user_quota > settings.total_quota {
            return Err(TurnConfigError {
                path: path.to_path_buf(),
                line: None,
                message: format!(
                    "user-quota {} is above total-quota {}",
                    settings.user_quota, settings.total_quota
                ),
            });
        }
        Ok(settings)
    }

    fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        match key {
            "realm" => {
                if value.len() > 127 || value.chars().any(|c| c.is_control() || c == '"') {
                    return Err("realm must be printable text of at most 127 bytes".into());
                }
                self.realm = value.to_string();
            }
            "listening-address" => {
                self.listen = Some(value.parse().map_err(|_| {
                    format!("listening-address `{value}` is not an address like 0.0.0.0:3478")
                })?);
            }
            "static-auth-secret" => {
                let secret = crate::config::parse_secret("static-auth-secret", value)
                    .map_err(|e| format!("static-auth-secret {}", e.reason))?;
                self.static_auth_secret = Some(secret);
            }
            "external-ip" => self.external_ip = Some(parse_ip(key, value)?),
            "relay-ip" => self.relay_ip = Some(parse_ip(key, value)?),
            "min-port" => self.min_port = parse_number(key, value, 1024, 65535)? as u16,
            "max-port" => self.max_port = parse_number(key, value, 1024, 65535)? as u16,
            "user-quota" => self.user_quota = parse_number(key, value, 1, 10_000)? as usize,
            "total-quota" => self.total_quota = parse_number(key, value, 1, 100_000)? as usize,
            "allowed-peer-ip" => self.allowed_peers.push(
                value
                    .parse()
                    .map_err(|e: super::policy::PeerRuleError| format!("allowed-peer-ip: {e}"))?,
            ),
            other => return Err(format!("unknown key `{other}`")),
        }
        Ok(())
    }
}

fn parse_ip(key: &str, value: &str) -> Result<IpAddr, String> {
    let ip: IpAddr = value
        .parse()
        .map_err(|_| format!("{key} `{value}` is not an IP address"))?;
    if ip.is_multicast() {
        return Err(format!("{key} `{value}` is a multicast address"));
    }
    Ok(ip.to_canonical())
}

fn parse_number(key: &str, value: &str, min: u64, max: u64) -> Result<u64, String> {
    match value.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!(
            "{key} `{value}` must be a whole number from {min} to {max}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<TurnSettings, TurnConfigError> {
        TurnSettings::parse(text, Path::new("turn.conf"))
    }

    #[test]
    fn empty_file_means_defaults() {
        assert_eq!(
            parse("# nothing\n\n").expect("valid"),
            TurnSettings::default()
        );
    }

    #[test]
    fn every_key_parses() {
        let s = parse(
            "realm = chat.example.org\n\
             listening-address = 0.0.0.0:3479\n\
             static-auth-secret = MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n\
             external-ip = 203.0.113.5\n\
             relay-ip = 10.0.0.5\n\
             min-port = 50000\n\
             max-port = 50100\n\
             user-quota = 4\n\
             total-quota = 200\n\
             allowed-peer-ip = 192.0.2.10:7882\n\
             allowed-peer-ip = 2001:db8::7\n",
        )
        .expect("valid");
        assert_eq!(s.realm, "chat.example.org");
        assert_eq!(s.listen, Some("0.0.0.0:3479".parse().expect("addr")));
        assert_eq!(
            s.static_auth_secret.as_deref(),
            Some(&b"0123456789abcdef0123456789abcdef"[..])
        );
        assert_eq!(s.external_ip, Some("203.0.113.5".parse().expect("ip")));
        assert_eq!(s.relay_ip, Some("10.0.0.5".parse().expect("ip")));
        assert_eq!((s.min_port, s.max_port), (50000, 50100));
        assert_eq!((s.user_quota, s.total_quota), (4, 200));
        assert_eq!(s.allowed_peers.len(), 2);
        assert!(
            !format!("{s:?}").contains("MDEy"),
            "the secret stays out of Debug"
        );
    }

    #[test]
    fn the_shipped_example_parses() {
        let text = include_str!("../../turn.conf.example");
        parse(text).expect("turn.conf.example must stay valid");
    }

    #[test]
    fn mistakes_name_the_line_and_the_problem() {
        let cases = [
            ("relam = x\n", 1, "unknown key `relam`"),
            ("\nmin-port = 80\n", 2, "min-port `80`"),
            ("max-port = lots\n", 1, "max-port `lots`"),
            ("user-quota = 0\n", 1, "user-quota `0`"),
            ("realm = a\nrealm = b\n", 2, "set twice"),
            ("external-ip = example.org\n", 1, "not an IP address"),
            ("listening-address = 3478\n", 1, "listening-address"),
            ("static-auth-secret = c2hvcnQ=\n", 1, "at least 32 bytes"),
            ("allowed-peer-ip = 0.0.0.0\n", 1, "allowed-peer-ip"),
            ("cert = /etc/ssl/turn.pem\n", 1, "TLS is not supported"),
            ("verbose\n", 1, "key = value"),
            ("realm =\n", 1, "needs a value"),
        ];
        for (text, line, needle) in cases {
            let err = parse(text).expect_err(text);
            assert_eq!(err.line, Some(line), "{text:?}: {err}");
            let shown = err.to_string();
            assert!(shown.contains(needle), "{text:?}: {shown}");
            assert!(shown.starts_with(&format!("turn.conf:{line}:")), "{shown}");
        }
    }

    #[test]
    fn inconsistent_values_are_refused() {
        let err = parse("min-port = 60000\nmax-port = 50000\n").expect_err("range");
        assert!(err.to_string().contains("above max-port"), "{err}");
        let err = parse("user-quota = 20\ntotal-quota = 10\n").expect_err("quota");
        assert!(err.to_string().contains("above total-quota"), "{err}");
    }
}
