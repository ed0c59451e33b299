//! The read loops: one per listener (UDP socket, TCP connection set). Each message passes the
//! [`Gate`](super::gate::Gate), then the `turn` crate's per-message `Request` handler does the
//! protocol work (allocations, permissions, channels, relaying) with our nonce map, our credential
//! check and our relay sockets. We drive the crate's handler ourselves instead of its `Server` so
//! that the gate sees every message first and TCP connections can feed the same handler.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ::turn::allocation::allocation_manager::Manager;
use ::turn::allocation::five_tuple::FiveTuple;
use ::turn::auth::AuthHandler;
use ::turn::proto::PROTO_UDP;
use ::turn::proto::chandata::ChannelData;
use ::turn::server::request::Request;
use stun::message::{CLASS_REQUEST, METHOD_ALLOCATE, Message};
use tokio::net::UdpSocket;
use tokio::sync::{Mutex, mpsc, watch};
use webrtc_util::Conn;

use super::credentials::{long_term_key, parse_username_format};
use super::gate::{Arrival, Gate, Verdict};
use super::tcp::Inbound;

/// Channel bindings last 10 minutes (RFC 8656 §12).
const CHANNEL_BIND_LIFETIME: Duration = Duration::from_secs(600);

/// What every listener shares.
pub struct Shared {
    /// Checks in front of the crate.
    pub gate: Gate,
    /// Every listener's allocations (quotas count across them).
    pub managers: Vec<Arc<Manager>>,
    /// The crate's own credential callback (it re-checks what the gate let through).
    pub auth: Arc<dyn AuthHandler + Send + Sync>,
    /// Held across the quota check and the allocation it admits, so that UDP and TCP cannot
    /// both squeeze in the last allowed allocation.
    pub admission: Mutex<()>,
}

/// One listener: the socket answers go out through, and its allocations.
pub struct Listener {
    /// Where answers and relayed data towards clients are sent.
    pub conn: Arc<dyn Conn + Send + Sync>,
    /// This listener's allocations.
    pub manager: Arc<Manager>,
    /// The listener's local address (the server side of every 5-tuple).
    pub local: SocketAddr,
}

impl Listener {
    fn five_tuple(&self, client: SocketAddr) -> FiveTuple {
        // The crate keys allocations with PROTO_UDP whatever the transport; each listener has its
        // own allocation manager, so UDP and TCP clients never collide.
        FiveTuple {
            protocol: PROTO_UDP,
            src_addr: client,
            dst_addr: self.local,
        }
    }
}

/// The crate's credential callback. Only requests the gate authenticated reach the crate, expiry
/// included (the gate lets an allocation's owner keep using an expired username on it), so this
/// checks the username's form and derives the key.
pub struct RestAuth {
    /// The shared secret.
    pub secret: Vec<u8>,
    /// Our realm (the client's REALM was checked against it by the gate).
    pub realm: String,
}

impl AuthHandler for RestAuth {
    fn auth_handle(
        &self,
        username: &str,
        _realm: &str,
        _src: SocketAddr,
    ) -> Result<Vec<u8>, ::turn::Error> {
        parse_username_format(username).map_err(|e| ::turn::Error::Other(e.to_string()))?;
        Ok(long_term_key(&self.secret, username, &self.realm))
    }
}

/// Handles one datagram or TCP frame from `client`.
async fn handle(shared: &Shared, listener: &Listener, packet: Vec<u8>, client: SocketAddr) {
    let mut _admission = None;
    if !ChannelData::is_channel_data(&packet) {
        let mut m = Message::new();
        if m.unmarshal_binary(&packet).is_err() {
            return;
        }
        if m.typ.method == METHOD_ALLOCATE && m.typ.class == CLASS_REQUEST {
            _admission = Some(shared.admission.lock().await);
        }
        let arrival = Arrival {
            five_tuple: listener.five_tuple(client),
            manager: &listener.manager,
            all: &shared.managers,
        };
        match shared.gate.inspect(&m, &arrival).await {
            Verdict::Forward => {}
            Verdict::Reply(bytes) => {
                if !bytes.is_empty() {
                    let _ = listener.conn.send_to(&bytes, client).await;
                }
                return;
            }
            Verdict::Drop => return,
        }
    }
    let mut request = Request {
        conn: listener.conn.clone(),
        src_addr: client,
        buff: packet,
        allocation_manager: listener.manager.clone(),
        nonces: shared.gate.nonces.shared_map(),
        auth_handler: shared.auth.clone(),
        realm: shared.gate.realm.clone(),
        channel_bind_timeout: CHANNEL_BIND_LIFETIME,
    };
    if let Err(e) = request.handle_request().await {
        // Expected for stray traffic (data for expired allocations and the like): not a warning.
        tracing::trace!(%client, cause = %e, "TURN message not handled");
    }
}

/// Serves a UDP listener until `stop` fires.
pub async fn udp_loop(
    shared: Arc<Shared>,
    listener: Listener,
    socket: Arc<UdpSocket>,
    mut stop: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let (n, client) = tokio::select! {
            received = socket.recv_from(&mut buf) => match received {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(cause = %e, "TURN UDP receive failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let packet = buf.get(..n).map(<[u8]>::to_vec).unwrap_or_default();
        handle(&shared, &listener, packet, client).await;
    }
    let _ = listener.manager.close().await;
}

/// Serves the TCP connection set until `stop` fires.
pub async fn tcp_loop(
    shared: Arc<Shared>,
    listener: Listener,
    mut inbound: mpsc::Receiver<Inbound>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let item = tokio::select! {
            item = inbound.recv() => item,
            _ = stop.changed() => break,
        };
        match item {
            Some(Inbound::Frame(frame, client)) => handle(&shared, &listener, frame, client).await,
            Some(Inbound::Closed(client)) => {
                listener
                    .manager
                    .delete_allocation(&listener.five_tuple(client))
                    .await
            }
            None => break,
        }
    }
    let _ = listener.manager.close().await;
}
