//! The next deadline of every peer connection of a worker, so a worker turn looks only at the
//! connections that are due. Asking each connection instead (`rtc` walks its ICE agent, DTLS
//! endpoint and interceptor chain to answer `poll_timeout`) made every turn cost O(connections),
//! which many small rooms (one-to-one calls) paid on every packet.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Instant;

use crate::net::router::ConnId;

/// Deadlines by connection, with a heap ordered by time. A connection rescheduled leaves its
/// old entry in the heap; such stale entries are skipped when they come up.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<(Instant, ConnId)>>,
    due: HashMap<ConnId, Instant>,
}

impl Timers {
    /// Sets (or, with `None`, clears) a connection's deadline.
    pub fn set(&mut self, conn: ConnId, at: Option<Instant>) {
        match at {
            Some(t) => {
                if self.due.insert(conn, t) != Some(t) {
                    self.heap.push(Reverse((t, conn)));
                }
            }
            None => {
                self.due.remove(&conn);
            }
        }
    }

    /// Brings a connection's deadline forward to `at`, if it had none or a later one.
    pub fn advance(&mut self, conn: ConnId, at: Instant) {
        if self.due.get(&conn).is_none_or(|t| at < *t) {
            self.set(conn, Some(at));
        }
    }

    /// Takes the next connection whose deadline is at or before `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<ConnId> {
        while let Some(&Reverse((t, conn))) = self.heap.peek() {
            if t > now {
                return None;
            }
            self.heap.pop();
            if self.due.get(&conn) == Some(&t) {
                self.due.remove(&conn);
                return Some(conn);
            }
        }
        None
    }

    /// The earliest deadline.
    pub fn next(&mut self) -> Option<Instant> {
        while let Some(&Reverse((t, conn))) = self.heap.peek() {
            if self.due.get(&conn) == Some(&t) {
                return Some(t);
            }
            self.heap.pop();
        }
        None
    }

    /// Forgets everything (before a full sweep sets every deadline again, which also drops
    /// the stale entries).
    pub fn clear(&mut self) {
        self.heap.clear();
        self.due.clear();
    }

    /// Heap entries, stale ones included (for tests).
    #[cfg(test)]
    fn entries(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn due_connections_come_out_in_time_order_and_once() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut t = Timers::default();
        t.set(ConnId(1), Some(ms(30)));
        t.set(ConnId(2), Some(ms(10)));
        t.set(ConnId(3), Some(ms(20)));
        assert_eq!(t.next(), Some(ms(10)));
        assert_eq!(t.pop_due(ms(5)), None, "nothing due yet");
        assert_eq!(t.pop_due(ms(25)), Some(ConnId(2)));
        assert_eq!(t.pop_due(ms(25)), Some(ConnId(3)));
        assert_eq!(t.pop_due(ms(25)), None);
        assert_eq!(t.next(), Some(ms(30)));
    }

    #[test]
    fn a_rescheduled_connection_fires_at_its_new_time_only() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut t = Timers::default();
        t.set(ConnId(1), Some(ms(10)));
        t.set(ConnId(1), Some(ms(50)));
        assert_eq!(t.pop_due(ms(20)), None, "the old deadline is stale");
        assert_eq!(t.next(), Some(ms(50)));
        t.set(ConnId(1), Some(ms(50)));
        assert_eq!(t.entries(), 1, "the same deadline again adds nothing");
        assert_eq!(t.pop_due(ms(60)), Some(ConnId(1)));
        assert_eq!(t.pop_due(ms(60)), None);
        // Cleared: its entry is skipped.
        t.set(ConnId(2), Some(ms(70)));
        t.set(ConnId(2), None);
        assert_eq!(t.next(), None);
        assert_eq!(t.pop_due(ms(80)), None);
    }

    #[test]
    fn advance_only_brings_a_deadline_forward() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut t = Timers::default();
        t.advance(ConnId(1), ms(40));
        assert_eq!(t.next(), Some(ms(40)), "none before: set");
        t.advance(ConnId(1), ms(90));
        assert_eq!(t.entries(), 1, "a later one changes nothing");
        t.advance(ConnId(1), ms(20));
        assert_eq!(t.pop_due(ms(30)), Some(ConnId(1)));
        assert_eq!(t.pop_due(ms(50)), None, "the 40 ms entry went stale");
    }

    #[test]
    fn clear_drops_stale_entries() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        for i in 0..100 {
            t.set(ConnId(1), Some(t0 + Duration::from_millis(i)));
        }
        assert_eq!(t.entries(), 100);
        t.clear();
        t.set(ConnId(1), Some(t0));
        assert_eq!(t.entries(), 1);
    }
}
