//! Sockets: the UDP mux, the passive ICE-TCP listener and the routing table they share.

pub(crate) mod outbox;
pub(crate) mod router;
pub mod stun;
pub(crate) mod tcp;
pub(crate) mod udp;
