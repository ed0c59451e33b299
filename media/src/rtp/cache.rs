//! A fixed-size cache of recent packets of one stream, indexed by sequence number.
//!
//! Slots are allocated once; inserting overwrites the slot of the packet `capacity` numbers
//! earlier, so the cache never grows and never allocates on the packet path.

use super::seq_diff;

/// Recent packets of one stream, looked up by RTP sequence number.
#[derive(Debug)]
pub struct PacketCache<T> {
    slots: Box<[Option<(u16, T)>]>,
    mask: usize,
    highest: Option<u16>,
}

impl<T> PacketCache<T> {
    /// A cache holding the last `capacity` sequence numbers (rounded up to a power of two).
    pub fn new(capacity: usize) -> Self {
        let cap = capacity.clamp(1, 1 << 15).next_power_of_two();
        Self {
            slots: (0..cap).map(|_| None).collect(),
            mask: cap - 1,
            highest: None,
        }
    }

    /// How many sequence numbers the cache spans.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// How many cached packets `counts` says yes to (counted, for statistics).
    pub fn count(&self, counts: impl Fn(&T) -> bool) -> usize {
        self.slots
            .iter()
            .filter(|s| s.as_ref().is_some_and(|(_, p)| counts(p)))
            .count()
    }

    /// Stores a packet; a packet older than the cached window is ignored.
    pub fn insert(&mut self, seq: u16, packet: T) {
        match self.highest {
            Some(h) if seq_diff(seq, h) > 0 => self.highest = Some(seq),
            Some(h) if -(seq_diff(seq, h) as i32) >= self.slots.len() as i32 => return,
            Some(_) => {}
            None => self.highest = Some(seq),
        }
        self.slots[seq as usize & self.mask] = Some((seq, packet));
    }

    /// The packet with this sequence number, if still cached.
    pub fn get(&self, seq: u16) -> Option<&T> {
        match &self.slots[seq as usize & self.mask] {
            Some((s, p)) if *s == seq => Some(p),
            _ => None,
        }
    }

    /// The packet with this sequence number, if still cached, to update.
    pub fn get_mut(&mut self, seq: u16) -> Option<&mut T> {
        match &mut self.slots[seq as usize & self.mask] {
            Some((s, p)) if *s == seq => Some(p),
            _ => None,
        }
    }

    /// Forgets one packet.
    pub fn remove(&mut self, seq: u16) {
        let slot = &mut self.slots[seq as usize & self.mask];
        if slot.as_ref().is_some_and(|(s, _)| *s == seq) {
            *slot = None;
        }
    }

    /// Forgets the packets `keep` says no to (e.g. those too old to be asked for again).
    pub fn retain(&mut self, keep: impl Fn(&T) -> bool) {
        for slot in self.slots.iter_mut() {
            if slot.as_ref().is_some_and(|(_, p)| !keep(p)) {
                *slot = None;
            }
        }
    }

    /// Forgets everything (e.g. when the publisher restarts its stream).
    pub fn clear(&mut self) {
        self.slots.iter_mut().for_each(|s| *s = None);
        self.highest = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_and_evicts() {
        let mut c = PacketCache::new(100);
        assert_eq!(c.capacity(), 128);
        for s in 0..200u16 {
            c.insert(s, s as u32 * 10);
        }
        assert_eq!(c.get(199), Some(&1990));
        assert_eq!(c.get(72), Some(&720));
        assert_eq!(c.get(71), None, "evicted by 199");
        assert_eq!(c.get(500), None);
    }

    #[test]
    fn wraparound_and_late_packets() {
        let mut c = PacketCache::new(8);
        for i in 0..6u16 {
            c.insert(65533u16.wrapping_add(i), i);
        }
        assert_eq!(c.get(65533), Some(&0));
        assert_eq!(c.get(2), Some(&5));
        // A late packet inside the window is stored; one outside it is refused.
        c.insert(65532, 99);
        assert_eq!(c.get(65532), Some(&99));
        c.insert(60000, 7);
        assert_eq!(c.get(60000), None);
        c.clear();
        assert_eq!(c.get(2), None);
    }

    #[test]
    fn retain_forgets_what_is_refused() {
        let mut c = PacketCache::new(16);
        for s in 0..10u16 {
            c.insert(s, s);
        }
        c.retain(|v| *v >= 6);
        assert_eq!(c.get(5), None);
        assert_eq!(c.get(6), Some(&6));
        assert_eq!(c.get(9), Some(&9));
        // The window still moves on from the highest number seen.
        c.insert(10, 10);
        assert_eq!(c.get(10), Some(&10));
    }

    #[test]
    fn one_packet_is_updated_or_removed_and_packets_are_counted() {
        let mut c = PacketCache::new(16);
        for s in 0..10u16 {
            c.insert(s, s);
        }
        // A number that only shares a packet's slot does not reach it.
        assert_eq!(c.get_mut(7 + 16), None);
        c.remove(8 + 16);
        *c.get_mut(9).expect("cached") += 100;
        assert_eq!((c.get(8), c.get(9)), (Some(&8), Some(&109)));
        c.remove(7);
        assert_eq!(c.get(7), None);
        assert_eq!(c.count(|_| true), 9);
        assert_eq!(c.count(|v| *v >= 8), 2);
    }
}
