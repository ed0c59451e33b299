//! The embedded TURN server (RFC 8656) that lets callers behind strict NATs and UDP-blocking
//! firewalls reach the SFU: UDP and TCP on one address (`MESCON_TURN_LISTEN`, default
//! 0.0.0.0:3478), relayed over UDP, authenticated with TURN REST credentials that
//! `GET /api/ice-servers` mints from the shared secret, relaying only to the SFU's own addresses.
//!
//! The protocol engine is the `turn` crate's per-message handler; around it we own the listeners
//! (so TCP works), the credential and nonce handling (so failures get the RFC's 401/438), the relay
//! policy (403) and the quotas (486/508): the gate module lists the exact answers.

pub mod credentials;
mod gate;
mod listener;
mod nonce;
pub mod policy;
mod relay;
pub mod settings;
mod shortcut;
mod tcp;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ::turn::allocation::allocation_manager::{Manager, ManagerConfig};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{Mutex, mpsc, watch};
use tokio::task::JoinHandle;
use webrtc_util::Conn;

use crate::clock::Clock;
use crate::config::Config;
pub use credentials::{RestCredential, mint};
use gate::{Gate, Quotas};
use listener::{Listener, RestAuth, Shared};
use nonce::Nonces;
pub use policy::{PeerRule, RelayPolicy};
use relay::PortRangeRelays;
pub use settings::{TurnConfigError, TurnSettings};
use tcp::TcpConns;

/// Frames from all TCP connections waiting for the read loop.
const TCP_INBOUND_QUEUE: usize = 1024;

/// Why the TURN server could not start.
#[derive(Debug, thiserror::Error)]
pub enum TurnStartError {
    /// turn.conf is unusable.
    #[error(transparent)]
    Config(#[from] TurnConfigError),
    /// A listener could not be bound.
    #[error("TURN cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The settings contradict each other.
    #[error("TURN settings: {0}")]
    Invalid(String),
}

/// Reads turn.conf (when `MESCON_TURN_CONFIG` names one) and folds the settings that belong to the
/// main configuration into `config`: the listen address override and the static auth secret, so
/// that `/api/ice-servers` signs with the secret the TURN server checks.
pub fn prepare(config: &mut Config) -> Result<TurnSettings, TurnConfigError> {
    let settings = match &config.turn_config {
        Some(path) => TurnSettings::load(path)?,
        None => TurnSettings::default(),
    };
    if let (Some(_), Some(listen)) = (config.turn_listen, settings.listen) {
        config.turn_listen = Some(listen);
    }
    if let Some(secret) = &settings.static_auth_secret {
        tracing::info!("TURN REST secret taken from turn.conf");
        config.turn_secret = Some(secret.clone());
    }
    Ok(settings)
}

/// Starts the TURN server when `config.turn_listen` is set, and records the bound address there
/// (the real port when the configuration asked for port 0).
pub async fn start(
    config: &mut Config,
    settings: &TurnSettings,
    secret: &[u8],
    clock: Arc<dyn Clock>,
    sfu_ips: &[IpAddr],
) -> Result<Option<TurnServer>, TurnStartError> {
    let Some(listen) = config.turn_listen else {
        return Ok(None);
    };
    let server = TurnServer::start(listen, config, settings, secret, clock, sfu_ips).await?;
    config.turn_listen = Some(server.local_addr());
    Ok(Some(server))
}

/// A running TURN server. Dropping it stops it too.
#[derive(Debug)]
pub struct TurnServer {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl TurnServer {
    /// Binds UDP and TCP on `listen` and starts serving. `sfu_ips` are the addresses the SFU
    /// advertises in its candidates (the public IPs, else this host's): the peers relays may reach.
    pub async fn start(
        listen: SocketAddr,
        config: &Config,
        settings: &TurnSettings,
        secret: &[u8],
        clock: Arc<dyn Clock>,
        sfu_ips: &[IpAddr],
    ) -> Result<TurnServer, TurnStartError> {
        let (udp, tcp) = bind_pair(listen).await?;
        let addr = udp.local_addr().map_err(|source| TurnStartError::Bind {
            addr: listen,
            source,
        })?;
        let policy = RelayPolicy::for_sfu(config.media_udp, sfu_ips, addr, &settings.allowed_peers);
        let relays = relays(addr, config, settings, &policy, sfu_ips)?;
        let make_manager = || {
            Arc::new(Manager::new(ManagerConfig {
                relay_addr_generator: Box::new(relays.clone()),
                alloc_close_notify: None,
            }))
        };
        let (udp_manager, tcp_manager) = (make_manager(), make_manager());
        let nonces = Nonces::default();
        let shared = Arc::new(Shared {
            gate: Gate {
                realm: settings.realm.clone(),
                secret: secret.to_vec(),
                clock,
                nonces: nonces.clone(),
                policy: policy.clone(),
                quotas: Quotas {
                    per_user: settings.user_quota,
                    total: settings.total_quota,
                },
            },
            managers: vec![udp_manager.clone(), tcp_manager.clone()],
            auth: Arc::new(RestAuth {
                secret: secret.to_vec(),
                realm: settings.realm.clone(),
            }),
            admission: Mutex::new(()),
        });

        let (stop, stop_rx) = watch::channel(false);
        let udp = Arc::new(udp);
        let udp_conn: Arc<dyn Conn + Send + Sync> = udp.clone();
        let tcp_conns = Arc::new(TcpConns::new(addr));
        let tcp_conn: Arc<dyn Conn + Send + Sync> = tcp_conns.clone();
        let (inbound_tx, inbound_rx) = mpsc::channel(TCP_INBOUND_QUEUE);
        let tasks = vec![
            tokio::spawn(listener::udp_loop(
                shared.clone(),
                Listener {
                    conn: udp_conn,
                    manager: udp_manager,
                    local: addr,
                },
                udp,
                stop_rx.clone(),
            )),
            tokio::spawn(listener::tcp_loop(
                shared.clone(),
                Listener {
                    conn: tcp_conn,
                    manager: tcp_manager,
                    local: addr,
                },
                inbound_rx,
                stop_rx.clone(),
            )),
            tokio::spawn(tcp::accept_loop(
                tcp,
                tcp_conns,
                inbound_tx,
                // Every allocation may have its connection, plus headroom for ones being set up.
                settings.total_quota.saturating_mul(2).max(64),
                stop_rx.clone(),
            )),
            tokio::spawn(sweep_nonces(nonces, stop_rx)),
        ];
        if policy.rules().is_empty() {
            tracing::warn!(
                "TURN relays to no peer: the SFU advertises no address it may reach; set \
                 MESCON_PUBLIC_IP"
            );
        }
        let rules: Vec<String> = policy.rules().iter().map(ToString::to_string).collect();
        tracing::info!(
            %addr,
            relay = %relays.external_ip,
            ports = %format!("{}-{}", relays.min_port, relays.max_port),
            peers = %rules.join(","),
            local_delivery = relays.shortcuts.len(),
            "TURN server listening on udp and tcp"
        );
        Ok(TurnServer { addr, stop, tasks })
    }

    /// The bound address (UDP and TCP share it).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Asks every task to stop; allocations are closed as the read loops end.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    /// Stops and waits until every task has ended.
    pub async fn join(self) {
        self.stop();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Binds UDP and TCP on the same address; with port 0, on the same free port.
async fn bind_pair(listen: SocketAddr) -> Result<(UdpSocket, TcpListener), TurnStartError> {
    let bind_err = |source| TurnStartError::Bind {
        addr: listen,
        source,
    };
    if listen.port() != 0 {
        let udp = UdpSocket::bind(listen).await.map_err(bind_err)?;
        let tcp = TcpListener::bind(listen).await.map_err(bind_err)?;
        return Ok((udp, tcp));
    }
    let mut last = None;
    for _ in 0..20 {
        let udp = UdpSocket::bind(listen).await.map_err(bind_err)?;
        let port = udp.local_addr().map_err(bind_err)?.port();
        match TcpListener::bind(SocketAddr::new(listen.ip(), port)).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) => last = Some(e),
        }
    }
    Err(bind_err(last.unwrap_or_else(|| {
        std::io::Error::other("no port free for both UDP and TCP")
    })))
}

/// Where relay sockets bind and what address clients are told.
fn relays(
    listen: SocketAddr,
    config: &Config,
    settings: &TurnSettings,
    policy: &RelayPolicy,
    sfu_ips: &[IpAddr],
) -> Result<PortRangeRelays, TurnStartError> {
    let bind_ip = settings.relay_ip.unwrap_or(listen.ip());
    let same_family = |ip: &IpAddr| ip.is_ipv4() == bind_ip.is_ipv4();
    let external_ip = settings
        .external_ip
        .or_else(|| config.public_ips.iter().copied().find(same_family))
        .or((!bind_ip.is_unspecified()).then_some(bind_ip))
        .or_else(|| {
            policy
                .rules()
                .iter()
                .filter(|r| same_family(&r.ip))
                .find_map(|r| relay::route_source(r.ip))
        })
        .unwrap_or(if bind_ip.is_ipv4() {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            IpAddr::V6(Ipv6Addr::LOCALHOST)
        });
    if !same_family(&external_ip) {
        return Err(TurnStartError::Invalid(format!(
            "external-ip {external_ip} and relay-ip {bind_ip} are of different address families"
        )));
    }
    Ok(PortRangeRelays {
        shortcuts: shortcut::shortcuts(config.media_udp, sfu_ips, bind_ip).into(),
        bind_ip,
        external_ip,
        min_port: settings.min_port,
        max_port: settings.max_port,
    })
}

async fn sweep_nonces(nonces: Nonces, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = tick.tick() => nonces.sweep().await,
            _ = stop.changed() => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turn_conf_overrides_listen_and_secret_but_cannot_switch_turn_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("turn.conf");
        std::fs::write(
            &path,
            "listening-address = 127.0.0.1:3479\n\
             static-auth-secret = MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n",
        )
        .expect("write");
        let mut config = Config::for_tests(dir.path(), None);
        config.turn_config = Some(path.clone());
        config.turn_listen = Some("0.0.0.0:3478".parse().expect("addr"));
        prepare(&mut config).expect("valid");
        assert_eq!(
            config.turn_listen,
            Some("127.0.0.1:3479".parse().expect("addr"))
        );
        assert_eq!(
            config.turn_secret.as_deref(),
            Some(&b"0123456789abcdef0123456789abcdef"[..])
        );

        let mut off = Config::for_tests(dir.path(), None);
        off.turn_config = Some(path);
        prepare(&mut off).expect("valid");
        assert_eq!(
            off.turn_listen, None,
            "an empty MESCON_TURN_LISTEN keeps TURN off"
        );
    }

    #[test]
    fn a_bad_turn_conf_stops_the_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("turn.conf");
        std::fs::write(&path, "user-quota = many\n").expect("write");
        let mut config = Config::for_tests(dir.path(), None);
        config.turn_config = Some(path);
        let err = prepare(&mut config).expect_err("bad value");
        assert!(err.to_string().contains("turn.conf:1: user-quota"), "{err}");
    }
}
