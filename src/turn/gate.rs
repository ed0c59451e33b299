//! The gate in front of the `turn` crate's request handler. Every STUN message passes here first;
//! the gate answers what the crate gets wrong or does not do, and hands the rest on:
//! - authentication as RFC 8489 §9.2.4 wants it: no MESSAGE-INTEGRITY → 401 with REALM and NONCE,
//!   missing USERNAME/REALM/NONCE → 400, stale or unknown nonce → 438, wrong or expired credential →
//!   401 (the crate answers 400 to the last one). An expired username opens no new allocation but
//!   keeps working on the allocation it opened, so calls outlive the credential's hour;
//! - requests for a 5-tuple without an allocation → 437, and with another user's allocation → 441
//!   (the crate drops the first silently and does not check the second);
//! - the relay policy: CreatePermission/ChannelBind towards a peer the policy does not allow → 403,
//!   Send indications to such peers dropped (indications have no answer);
//! - quotas: a user's allocations past `user-quota` → 486, all allocations past `total-quota` → 508.
//!
//! Error answers after a successful authentication carry MESSAGE-INTEGRITY, as the RFC requires.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ::turn::allocation::allocation_manager::Manager;
use ::turn::allocation::five_tuple::FiveTuple;
use stun::attributes::{
    ATTR_FINGERPRINT, ATTR_MESSAGE_INTEGRITY, ATTR_NONCE, ATTR_REALM, ATTR_USERNAME,
    ATTR_XOR_PEER_ADDRESS,
};
use stun::error_code::{
    CODE_ALLOC_MISMATCH, CODE_ALLOC_QUOTA_REACHED, CODE_BAD_REQUEST, CODE_FORBIDDEN,
    CODE_INSUFFICIENT_CAPACITY, CODE_STALE_NONCE, CODE_UNAUTHORIZED, CODE_WRONG_CREDENTIALS,
    ErrorCode, ErrorCodeAttribute,
};
use stun::fingerprint::FINGERPRINT;
use stun::integrity::MessageIntegrity;
use stun::message::{
    CLASS_ERROR_RESPONSE, CLASS_INDICATION, CLASS_REQUEST, METHOD_ALLOCATE, METHOD_CHANNEL_BIND,
    METHOD_CREATE_PERMISSION, METHOD_REFRESH, METHOD_SEND, Message, MessageType, Setter,
};
use stun::textattrs::TextAttribute;

use super::credentials::{long_term_key, parse_username_format};
use super::nonce::{NonceState, Nonces};
use super::policy::RelayPolicy;
use crate::clock::Clock;

/// What to do with one message.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Hand it to the `turn` crate.
    Forward,
    /// Send these bytes back to the client instead.
    Reply(Vec<u8>),
    /// Ignore it.
    Drop,
}

/// Allocation limits.
#[derive(Debug, Clone, Copy)]
pub struct Quotas {
    /// Concurrent allocations per Mescon user id.
    pub per_user: usize,
    /// Concurrent allocations in total.
    pub total: usize,
}

/// Where a message arrived: its 5-tuple, the allocations of its listener, and of every listener
/// (quotas count across UDP and TCP).
pub struct Arrival<'a> {
    /// The 5-tuple as the crate keys allocations.
    pub five_tuple: FiveTuple,
    /// The allocations of the listener the message arrived on.
    pub manager: &'a Manager,
    /// Every listener's allocations.
    pub all: &'a [Arc<Manager>],
}

/// The gate's settings and state.
pub struct Gate {
    /// REALM of long-term authentication.
    pub realm: String,
    /// The TURN REST shared secret.
    pub secret: Vec<u8>,
    /// Time, for credential expiry.
    pub clock: Arc<dyn Clock>,
    /// Nonces, shared with the crate.
    pub nonces: Nonces,
    /// Where relaying is allowed.
    pub policy: RelayPolicy,
    /// Allocation limits.
    pub quotas: Quotas,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("realm", &self.realm)
            .field("policy", &self.policy)
            .field("quotas", &self.quotas)
            .finish_non_exhaustive()
    }
}

/// A request whose credential checked out.
struct Authed {
    username: String,
    user_id: String,
    key: Vec<u8>,
}

impl Gate {
    /// Decides what happens to `m`.
    pub async fn inspect(&self, m: &Message, at: &Arrival<'_>) -> Verdict {
        let method = m.typ.method;
        if m.typ.class == CLASS_INDICATION {
            if method != METHOD_SEND {
                return Verdict::Forward;
            }
            return match peer_addresses(m).as_deref() {
                Some([peer, ..]) if self.policy.allows(*peer) => Verdict::Forward,
                _ => {
                    refused("send_to_disallowed_peer");
                    Verdict::Drop
                }
            };
        }
        if m.typ.class != CLASS_REQUEST {
            // Responses sent to a server answer nothing of ours.
            return Verdict::Drop;
        }
        if ![
            METHOD_ALLOCATE,
            METHOD_REFRESH,
            METHOD_CREATE_PERMISSION,
            METHOD_CHANNEL_BIND,
        ]
        .contains(&method)
        {
            // Binding requests need no credential; the crate answers them.
            return Verdict::Forward;
        }
        let owner = at
            .manager
            .get_allocations_info(Some(vec![at.five_tuple]))
            .await
            .into_values()
            .next()
            .map(|info| info.username);
        let authed = match self.authenticate(m, owner.as_deref()).await {
            Ok(a) => a,
            Err(reply) => return Verdict::Reply(reply),
        };
        let signed = Some(authed.key.as_slice());
        match owner {
            // A second Allocate on a 5-tuple: the crate answers 437 itself.
            Some(_) if method == METHOD_ALLOCATE => return Verdict::Forward,
            Some(owner) if owner != authed.username => {
                refused("wrong_credentials");
                return Verdict::Reply(error_response(
                    m,
                    CODE_WRONG_CREDENTIALS,
                    "Wrong Credentials",
                    Vec::new(),
                    signed,
                ));
            }
            Some(_) => {}
            None if method == METHOD_ALLOCATE => {
                let (mine, total) = usage(at.all, &authed.user_id).await;
                if mine >= self.quotas.per_user {
                    refused("user_quota");
                    return Verdict::Reply(error_response(
                        m,
                        CODE_ALLOC_QUOTA_REACHED,
                        "Allocation Quota Reached",
                        Vec::new(),
                        signed,
                    ));
                }
                if total >= self.quotas.total {
                    refused("total_quota");
                    return Verdict::Reply(error_response(
                        m,
                        CODE_INSUFFICIENT_CAPACITY,
                        "Insufficient Capacity",
                        Vec::new(),
                        signed,
                    ));
                }
                return Verdict::Forward;
            }
            None => {
                return Verdict::Reply(error_response(
                    m,
                    CODE_ALLOC_MISMATCH,
                    "Allocation Mismatch",
                    Vec::new(),
                    signed,
                ));
            }
        }
        let allowed = match (method, peer_addresses(m)) {
            (METHOD_CREATE_PERMISSION, Some(peers)) if !peers.is_empty() => {
                peers.iter().all(|p| self.policy.allows_ip(p.ip()))
            }
            (METHOD_CHANNEL_BIND, Some(peers)) if !peers.is_empty() => {
                peers.iter().all(|p| self.policy.allows(*p))
            }
            (METHOD_CREATE_PERMISSION | METHOD_CHANNEL_BIND, _) => {
                return Verdict::Reply(error_response(
                    m,
                    CODE_BAD_REQUEST,
                    "Bad Request: XOR-PEER-ADDRESS missing or malformed",
                    Vec::new(),
                    signed,
                ));
            }
            _ => true,
        };
        if !allowed {
            refused("peer_not_allowed");
            tracing::debug!(user = %authed.user_id, "TURN peer refused by relay policy");
            return Verdict::Reply(error_response(
                m,
                CODE_FORBIDDEN,
                "Forbidden: peer not allowed by relay policy",
                Vec::new(),
                signed,
            ));
        }
        Verdict::Forward
    }

    /// The long-term credential check of RFC 8489 §9.2.4, with TURN REST usernames. `owner` is
    /// the username of the allocation on this 5-tuple, if there is one.
    async fn authenticate(&self, m: &Message, owner: Option<&str>) -> Result<Authed, Vec<u8>> {
        if !m.contains(ATTR_MESSAGE_INTEGRITY) {
            return Err(self
                .challenge(m, CODE_UNAUTHORIZED, "Unauthenticated")
                .await);
        }
        let text = |attr| TextAttribute::get_from_as(m, attr).map(|a| a.text);
        let (Ok(username), Ok(realm), Ok(nonce)) =
            (text(ATTR_USERNAME), text(ATTR_REALM), text(ATTR_NONCE))
        else {
            return Err(error_response(
                m,
                CODE_BAD_REQUEST,
                "Bad Request: USERNAME, REALM and NONCE are required",
                Vec::new(),
                None,
            ));
        };
        if self.nonces.check(&nonce).await == NonceState::Stale {
            return Err(self.challenge(m, CODE_STALE_NONCE, "Stale Nonce").await);
        }
        let parsed = match parse_username_format(&username) {
            Ok(p) if realm == self.realm => p,
            _ => {
                refused("bad_credentials");
                return Err(self
                    .challenge(m, CODE_UNAUTHORIZED, "Unauthenticated")
                    .await);
            }
        };
        // An expired username opens no new allocation. But an allocation outlives the credential
        // that made it: its owner keeps refreshing it and adding permissions with the same
        // username, so a call that lasts longer than the credential's TTL does not drop.
        let expired = parsed.expires_at <= self.clock.now_ms().div_euclid(1000);
        if expired && (m.typ.method == METHOD_ALLOCATE || owner != Some(username.as_str())) {
            refused("expired_credentials");
            return Err(self
                .challenge(m, CODE_UNAUTHORIZED, "Unauthenticated")
                .await);
        }
        let key = long_term_key(&self.secret, &username, &self.realm);
        if MessageIntegrity(key.clone()).check(&mut m.clone()).is_err() {
            refused("bad_credentials");
            return Err(self
                .challenge(m, CODE_UNAUTHORIZED, "Unauthenticated")
                .await);
        }
        Ok(Authed {
            user_id: parsed.user_id.to_string(),
            username,
            key,
        })
    }

    /// A 401 or 438 with REALM and a new NONCE, so the client can (re)try.
    async fn challenge(&self, m: &Message, code: ErrorCode, reason: &str) -> Vec<u8> {
        let nonce = self.nonces.issue().await;
        error_response(
            m,
            code,
            reason,
            vec![
                Box::new(TextAttribute::new(ATTR_REALM, self.realm.clone())),
                Box::new(TextAttribute::new(ATTR_NONCE, nonce)),
            ],
            None,
        )
    }
}

/// Counts a refusal for `/metrics`.
fn refused(reason: &'static str) {
    metrics::counter!("turn_refused_total", "reason" => reason).increment(1);
}

/// (allocations of `user_id`, all allocations) over every listener.
async fn usage(all: &[Arc<Manager>], user_id: &str) -> (usize, usize) {
    let (mut mine, mut total) = (0, 0);
    for manager in all {
        for info in manager.get_allocations_info(None).await.values() {
            total += 1;
            if info.username.split_once(':').map(|(_, u)| u) == Some(user_id) {
                mine += 1;
            }
        }
    }
    (mine, total)
}

/// Builds an error response to `m`; signed with `key` when the request was authenticated.
pub fn error_response(
    m: &Message,
    code: ErrorCode,
    reason: &str,
    extra: Vec<Box<dyn Setter>>,
    key: Option<&[u8]>,
) -> Vec<u8> {
    let mut setters: Vec<Box<dyn Setter>> = vec![
        Box::new(Message {
            transaction_id: m.transaction_id,
            ..Default::default()
        }),
        Box::new(MessageType::new(m.typ.method, CLASS_ERROR_RESPONSE)),
        Box::new(ErrorCodeAttribute {
            code,
            reason: reason.as_bytes().to_vec(),
        }),
    ];
    setters.extend(extra);
    if let Some(key) = key {
        setters.push(Box::new(MessageIntegrity(key.to_vec())));
    }
    if m.contains(ATTR_FINGERPRINT) {
        setters.push(Box::new(FINGERPRINT));
    }
    let mut out = Message::new();
    match out.build(&setters) {
        Ok(()) => out.raw,
        Err(e) => {
            tracing::warn!(cause = %e, "cannot build a TURN error response");
            Vec::new()
        }
    }
}

/// Every XOR-PEER-ADDRESS of `m` (the crate reads only the first), or None if one is malformed.
pub fn peer_addresses(m: &Message) -> Option<Vec<SocketAddr>> {
    m.attributes
        .0
        .iter()
        .filter(|a| a.typ == ATTR_XOR_PEER_ADDRESS)
        .map(|a| decode_xor_address(&a.value, &m.transaction_id.0))
        .collect()
}

const MAGIC_COOKIE: u32 = 0x2112_A442;

/// Decodes an XOR-mapped address value (RFC 8489 §14.2).
fn decode_xor_address(value: &[u8], transaction_id: &[u8; 12]) -> Option<SocketAddr> {
    let port = u16::from_be_bytes([*value.get(2)?, *value.get(3)?]) ^ (MAGIC_COOKIE >> 16) as u16;
    let mut mask = [0u8; 16];
    mask[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    mask[4..].copy_from_slice(transaction_id);
    let ip = match (value.get(1)?, value.len()) {
        (0x01, 8) => {
            let mut b = [0u8; 4];
            for (i, byte) in b.iter_mut().enumerate() {
                *byte = value[4 + i] ^ mask[i];
            }
            IpAddr::V4(Ipv4Addr::from(b))
        }
        (0x02, 20) => {
            let mut b = [0u8; 16];
            for (i, byte) in b.iter_mut().enumerate() {
                *byte = value[4 + i] ^ mask[i];
            }
            IpAddr::V6(Ipv6Addr::from(b))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::turn::proto::peeraddr::PeerAddress;
    use stun::agent::TransactionId;
    use stun::message::BINDING_REQUEST;

    fn with_peers(peers: &[SocketAddr]) -> Message {
        let mut setters: Vec<Box<dyn Setter>> = vec![
            Box::new(TransactionId::new()),
            Box::new(MessageType::new(METHOD_CREATE_PERMISSION, CLASS_REQUEST)),
        ];
        for p in peers {
            setters.push(Box::new(PeerAddress {
                ip: p.ip(),
                port: p.port(),
            }));
        }
        let mut m = Message::new();
        m.build(&setters).expect("build");
        m
    }

    #[test]
    fn reads_every_peer_address_v4_and_v6() {
        let peers: Vec<SocketAddr> = vec![
            "192.0.2.1:7882".parse().expect("v4"),
            "[2001:db8::5]:40000".parse().expect("v6"),
        ];
        assert_eq!(peer_addresses(&with_peers(&peers)), Some(peers));
        assert_eq!(peer_addresses(&with_peers(&[])), Some(vec![]));
    }

    #[test]
    fn error_responses_keep_the_transaction_and_verify_when_signed() {
        let mut request = Message::new();
        request
            .build(&[Box::new(TransactionId::new()), Box::new(BINDING_REQUEST)])
            .expect("build");
        let key = b"0123456789abcdef".to_vec();
        let raw = error_response(
            &request,
            CODE_FORBIDDEN,
            "Forbidden",
            Vec::new(),
            Some(&key),
        );
        let mut answer = Message::new();
        answer.unmarshal_binary(&raw).expect("decodes");
        assert_eq!(answer.transaction_id, request.transaction_id);
        assert_eq!(answer.typ.class, CLASS_ERROR_RESPONSE);
        let mut code = ErrorCodeAttribute::default();
        stun::message::Getter::get_from(&mut code, &answer).expect("error code");
        assert_eq!(code.code.0, CODE_FORBIDDEN.0);
        MessageIntegrity(key)
            .check(&mut answer)
            .expect("signed with the request's key");
    }
}
