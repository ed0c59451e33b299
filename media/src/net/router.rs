//! The routing table shared by the socket tasks and the workers: which connection a datagram
//! belongs to. Readers look up; workers register and remove.

use dashmap::DashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc;

use rtc::shared::TransportProtocol;

/// Identifies one peer connection inside the SFU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ConnId(pub u64);

/// Where a datagram goes: the worker task that owns the connection, and the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Route {
    pub worker: usize,
    pub conn: ConnId,
}

/// Which transport a remote address speaks to us over.
pub(crate) type AddrKey = (SocketAddr, TransportProtocol);

/// Routes by ICE ufrag (learned from signaling) and by remote address (learned from STUN).
#[derive(Default)]
pub(crate) struct Router {
    by_ufrag: DashMap<String, Route>,
    by_addr: DashMap<AddrKey, Route>,
    /// Writers of accepted ICE-TCP connections, by remote address.
    tcp_writers: DashMap<SocketAddr, mpsc::Sender<bytes::Bytes>>,
    next_conn: AtomicU64,
}

impl Router {
    /// A fresh connection id.
    pub fn new_conn(&self) -> ConnId {
        ConnId(self.next_conn.fetch_add(1, Ordering::Relaxed) + 1)
    }

    /// Routes STUN requests addressed to `ufrag` to `route` (also after an ICE restart).
    pub fn set_ufrag(&self, ufrag: &str, route: Route) {
        self.by_ufrag.insert(ufrag.to_owned(), route);
    }

    /// Forgets a ufrag (replaced by an ICE restart).
    pub fn remove_ufrag(&self, ufrag: &str) {
        self.by_ufrag.remove(ufrag);
    }

    /// Route for a datagram: the STUN ufrag wins (it re-keys the address), else the address.
    #[inline]
    pub fn lookup(&self, key: AddrKey, stun_ufrag: Option<&str>) -> Option<Route> {
        if let Some(ufrag) = stun_ufrag
            && let Some(route) = self.by_ufrag.get(ufrag).map(|r| *r)
        {
            if self.by_addr.get(&key).map(|r| *r) != Some(route) {
                self.by_addr.insert(key, route);
            }
            return Some(route);
        }
        self.by_addr.get(&key).map(|r| *r)
    }

    /// Removes every route to a connection, and closes the ICE-TCP connections it used: a
    /// client that keeps its socket open after leaving must not keep a task and a descriptor.
    pub fn remove_conn(&self, conn: ConnId) {
        self.by_ufrag.retain(|_, r| r.conn != conn);
        self.by_addr.retain(|(addr, proto), r| {
            let keep = r.conn != conn;
            if !keep && *proto == TransportProtocol::TCP {
                // Dropping the writer ends the connection's tasks (`tcp::serve`).
                self.tcp_writers.remove(addr);
            }
            keep
        });
    }

    /// Closes every ICE-TCP connection (the SFU is stopping).
    pub fn close_tcp(&self) {
        self.tcp_writers.clear();
    }

    /// Registers the writer of an accepted ICE-TCP connection.
    pub fn add_tcp_writer(&self, peer: SocketAddr, tx: mpsc::Sender<bytes::Bytes>) {
        self.tcp_writers.insert(peer, tx);
    }

    /// Forgets a closed ICE-TCP connection and its address route.
    pub fn remove_tcp(&self, peer: SocketAddr) {
        self.tcp_writers.remove(&peer);
        self.by_addr.remove(&(peer, TransportProtocol::TCP));
    }

    /// The writer for an ICE-TCP peer.
    pub fn tcp_writer(&self, peer: &SocketAddr) -> Option<mpsc::Sender<bytes::Bytes>> {
        self.tcp_writers.get(peer).map(|w| w.clone())
    }

    /// Counts of (ufrag routes, address routes, TCP connections), for leak checks.
    pub fn counts(&self) -> (usize, usize, usize) {
        (
            self.by_ufrag.len(),
            self.by_addr.len(),
            self.tcp_writers.len(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stun_ufrag_learns_and_rekeys_addresses() {
        let r = Router::default();
        let a = Route {
            worker: 0,
            conn: r.new_conn(),
        };
        let b = Route {
            worker: 1,
            conn: r.new_conn(),
        };
        let key: AddrKey = ("127.0.0.1:5000".parse().unwrap(), TransportProtocol::UDP);
        assert_eq!(r.lookup(key, None), None, "unknown sources are dropped");
        r.set_ufrag("ua", a);
        assert_eq!(r.lookup(key, Some("zz")), None);
        assert_eq!(r.lookup(key, Some("ua")), Some(a));
        assert_eq!(r.lookup(key, None), Some(a), "address learned from STUN");
        // ICE restart onto another connection re-keys the address.
        r.set_ufrag("ub", b);
        assert_eq!(r.lookup(key, Some("ub")), Some(b));
        assert_eq!(r.lookup(key, None), Some(b));
        r.remove_conn(b.conn);
        r.remove_conn(a.conn);
        assert_eq!(r.counts(), (0, 0, 0));
    }
}
