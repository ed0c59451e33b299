//! [`Reception`]: what the SFU knows of one stream a publisher sends it, kept for the two kinds
//! of feedback that stream gets back: receiver reports (RFC 3550 §6.4.2, statistics as in
//! appendix A.3 and A.8) and generic NACKs (RFC 4585 §6.2.1).
//!
//! One record per packet, on the uplink's path, so it is a few integer operations on state the
//! stream owns: no map lookup, no allocation, no queue.

use std::time::Instant;

use rtc::rtcp::reception_report::ReceptionReport;

/// Sequence numbers the loss log spans: what a NACK can still ask for. A publisher's send
/// history is about a second; at a high video rate that is several hundred packets.
pub(crate) const LOG: usize = 512;
/// NACKs sent for one missing packet before giving up on it (libwebrtc's receivers stop at
/// 10 too): by then the publisher no longer has it, and the subscribers' keyframe requests
/// take over.
pub(crate) const MAX_RETRIES: u8 = 10;

/// Reception state of one remote RTP stream.
#[derive(Debug)]
pub(crate) struct Reception {
    ssrc: u32,
    clock_rate: f64,
    /// Whether the stream negotiated generic NACK: only then are its losses asked for again.
    nack: bool,
    seq: Option<Sequence>,
    /// Packets counted as received (duplicates within the log are not).
    received: u64,
    /// `expected` and `received` at the previous report, for its fraction lost.
    expected_prior: u64,
    received_prior: u64,
    /// Interarrival jitter in RTP timestamp units (RFC 3550 A.8).
    jitter: f64,
    /// Arrival time and RTP timestamp of the last in-order packet.
    last: Option<(Instant, u32)>,
    /// Middle 32 bits of the last sender report's NTP time, and when it came.
    last_sr: Option<(u32, Instant)>,
    /// Bit `s % LOG` set: sequence number `s` of the last `LOG` arrived.
    log: [u64; LOG / 64],
    /// NACKs sent so far for each missing sequence number of the log.
    retries: [u8; LOG],
}

/// Where the stream's sequence numbers are, extended to 64 bits past wraparounds.
#[derive(Debug, Clone, Copy)]
struct Sequence {
    /// Extended number of the first packet.
    base: u64,
    /// Extended highest number received.
    max: u64,
}

impl Reception {
    /// A stream with this SSRC and RTP clock, answered with NACKs if it negotiated them.
    pub fn new(ssrc: u32, clock_rate: u32, nack: bool) -> Self {
        Self {
            ssrc,
            clock_rate: clock_rate.max(1) as f64,
            nack,
            seq: None,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            jitter: 0.0,
            last: None,
            last_sr: None,
            log: [0; LOG / 64],
            retries: [0; LOG],
        }
    }

    /// The stream's SSRC.
    #[inline]
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Whether losses of the stream are asked for again.
    #[inline]
    pub fn nack(&self) -> bool {
        self.nack
    }

    /// Records one packet of the stream that arrived at `now`.
    #[inline]
    pub fn record(&mut self, seq: u16, timestamp: u32, now: Instant) {
        let Some(mut s) = self.seq else {
            self.seq = Some(Sequence {
                base: seq as u64,
                max: seq as u64,
            });
            self.received = 1;
            self.set(seq);
            self.last = Some((now, timestamp));
            return;
        };
        let ahead = seq.wrapping_sub(s.max as u16);
        if ahead != 0 && ahead < 0x8000 {
            let from = s.max + 1;
            s.max += ahead as u64;
            let to = s.max;
            // The slots the log reuses now belong to numbers not seen yet.
            for ext in from.max(to.saturating_sub(LOG as u64 - 1))..to {
                self.clear(ext as u16);
            }
            self.seq = Some(s);
            self.set(seq);
            self.received += 1;
            self.update_jitter(timestamp, now);
            return;
        }
        // A duplicate of the highest, or an older packet: late, reordered or a repair.
        let distance = (s.max as u16).wrapping_sub(seq) as u64;
        let Some(ext) = s.max.checked_sub(distance).filter(|_| distance != 0) else {
            return;
        };
        if distance < LOG as u64 {
            if self.is_set(seq) {
                return;
            }
            // Reordered at the start: the stream began earlier than its first arrival.
            s.base = s.base.min(ext);
            self.seq = Some(s);
            self.set(seq);
        }
        self.received += 1;
    }

    /// RFC 3550 A.8: only packets that advance the stream count, so a late repair's old
    /// timestamp does not read as jitter.
    #[inline]
    fn update_jitter(&mut self, timestamp: u32, now: Instant) {
        if let Some((at, ts)) = self.last {
            let arrival = now.saturating_duration_since(at).as_secs_f64() * self.clock_rate;
            let sent = timestamp.wrapping_sub(ts) as i32 as f64;
            self.jitter += ((arrival - sent).abs() - self.jitter) / 16.0;
        }
        self.last = Some((now, timestamp));
    }

    /// Notes a sender report of the stream (its NTP time), for the next report's LSR and DLSR.
    pub fn sender_report(&mut self, ntp_time: u64, now: Instant) {
        self.last_sr = Some(((ntp_time >> 16) as u32, now));
    }

    /// The reception report block for the stream (RFC 3550 §6.4.1), and the start of the next
    /// report interval; `None` before the first packet.
    pub fn report(&mut self, now: Instant) -> Option<ReceptionReport> {
        let s = self.seq?;
        let expected = s.max - s.base + 1;
        let lost = expected.saturating_sub(self.received);
        let expected_interval = expected - self.expected_prior;
        let received_interval = self.received - self.received_prior;
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = expected_interval.saturating_sub(received_interval);
        let fraction_lost = (lost_interval << 8)
            .checked_div(expected_interval)
            .map_or(0, |f| f.min(255) as u8);
        let (last_sender_report, delay) = match self.last_sr {
            Some((lsr, at)) => {
                let since = now.saturating_duration_since(at).as_secs_f64() * 65536.0;
                (lsr, since as u32)
            }
            None => (0, 0),
        };
        Some(ReceptionReport {
            ssrc: self.ssrc,
            fraction_lost,
            // A 24-bit field; the count saturates rather than wraps (RFC 3550 §6.4.1).
            total_lost: lost.min(0x7f_ffff) as u32,
            last_sequence_number: s.max as u32,
            jitter: self.jitter as u32,
            last_sender_report,
            delay,
        })
    }

    /// Adds to `out` the sequence numbers to ask the publisher for again, oldest first: those
    /// missing from the log that have not been asked for `MAX_RETRIES` times yet.
    pub fn missing(&mut self, out: &mut Vec<u16>) {
        let Some(s) = self.seq.filter(|_| self.nack) else {
            return;
        };
        let oldest = s.base.max(s.max.saturating_sub(LOG as u64 - 1));
        for ext in oldest..s.max {
            let seq = ext as u16;
            let slot = seq as usize % LOG;
            if self.is_set(seq) || self.retries[slot] >= MAX_RETRIES {
                continue;
            }
            self.retries[slot] += 1;
            out.push(seq);
        }
    }

    #[inline]
    fn set(&mut self, seq: u16) {
        let slot = seq as usize % LOG;
        self.log[slot / 64] |= 1 << (slot % 64);
    }

    #[inline]
    fn clear(&mut self, seq: u16) {
        let slot = seq as usize % LOG;
        self.log[slot / 64] &= !(1 << (slot % 64));
        self.retries[slot] = 0;
    }

    #[inline]
    fn is_set(&self, seq: u16) -> bool {
        let slot = seq as usize % LOG;
        self.log[slot / 64] & (1 << (slot % 64)) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(ms: u64) -> Instant {
        // One fixed origin per test process, so times built in a test compare.
        static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *ORIGIN.get_or_init(Instant::now) + Duration::from_millis(ms)
    }

    fn missing(r: &mut Reception) -> Vec<u16> {
        let mut out = Vec::new();
        r.missing(&mut out);
        out
    }

    #[test]
    fn reports_follow_rfc_3550_across_a_wrap() {
        let mut r = Reception::new(7, 90_000, true);
        assert!(
            r.report(at(0)).is_none(),
            "nothing to report before a packet"
        );
        // 65530..=65535, 0..=9 with 65534 and 3 lost, 5 late.
        let seqs: Vec<u16> = (65530u16..=65535)
            .chain(0..=9)
            .filter(|s| ![65534, 3, 5].contains(s))
            .chain([5])
            .collect();
        for (i, s) in seqs.iter().enumerate() {
            r.record(*s, 3000 * i as u32, at(i as u64));
        }
        let rr = r.report(at(100)).expect("a report");
        assert_eq!(rr.ssrc, 7);
        assert_eq!(
            rr.last_sequence_number,
            (1 << 16) | 9,
            "one cycle, highest 9"
        );
        assert_eq!(rr.total_lost, 2);
        assert_eq!(rr.fraction_lost, (2 * 256 / 16) as u8);
        // A duplicate changes nothing; the next interval counts only its own losses.
        r.record(9, 0, at(101));
        r.record(12, 0, at(102));
        let rr = r.report(at(200)).expect("a report");
        assert_eq!(rr.total_lost, 4, "10 and 11 lost too");
        assert_eq!(rr.fraction_lost, (2 * 256 / 3) as u8);
        // A repair of 10 arrives after the report: the next one counts it as received.
        r.record(10, 0, at(201));
        r.record(13, 0, at(202));
        let rr = r.report(at(300)).expect("a report");
        assert_eq!(rr.total_lost, 3);
        assert_eq!(
            rr.fraction_lost, 0,
            "as many arrived as were expected this interval"
        );
    }

    #[test]
    fn jitter_and_sender_report_timing() {
        let mut r = Reception::new(1, 90_000, false);
        // A packet every 20 ms of media time, arriving alternately 0 and 10 ms late.
        for i in 0..200u64 {
            let late = if i % 2 == 1 { 10 } else { 0 };
            r.record(i as u16, (i * 1800) as u32, at(i * 20 + late));
        }
        let rr = r.report(at(4000)).expect("a report");
        // |D| is 10 ms = 900 units every packet, so J converges to 900.
        assert!((890..=900).contains(&rr.jitter), "jitter {}", rr.jitter);
        assert_eq!((rr.last_sender_report, rr.delay), (0, 0), "no SR yet");
        r.sender_report(0x1234_5678_9abc_def0, at(4000));
        let rr = r.report(at(4500)).expect("a report");
        assert_eq!(rr.last_sender_report, 0x5678_9abc);
        assert_eq!(rr.delay, 32768, "half a second in 1/65536 s");
    }

    #[test]
    fn nacks_ask_for_what_is_missing_until_it_comes_or_retries_run_out() {
        let mut r = Reception::new(1, 90_000, true);
        for s in (65500u16..=65535).chain(0..20) {
            if ![65534, 2, 3].contains(&s) {
                r.record(s, 0, at(0));
            }
        }
        assert_eq!(missing(&mut r), vec![65534, 2, 3]);
        r.record(2, 0, at(1));
        assert_eq!(missing(&mut r), vec![65534, 3], "2 was repaired");
        for _ in 2..MAX_RETRIES {
            assert_eq!(missing(&mut r), vec![65534, 3]);
        }
        assert!(missing(&mut r).is_empty(), "given up after {MAX_RETRIES}");
        // A new loss is asked for afresh, and a stream without NACK is never asked.
        r.record(22, 0, at(2));
        assert_eq!(missing(&mut r), vec![20, 21]);
        let mut plain = Reception::new(2, 48_000, false);
        plain.record(1, 0, at(0));
        plain.record(5, 0, at(0));
        assert!(missing(&mut plain).is_empty());
    }

    #[test]
    fn the_log_forgets_what_is_too_old_to_ask_for() {
        let mut r = Reception::new(1, 90_000, true);
        r.record(100, 0, at(0));
        // A jump past the whole log: only the last LOG - 1 numbers are asked for.
        r.record(100 + LOG as u16 * 3, 0, at(1));
        let m = missing(&mut r);
        assert_eq!(m.len(), LOG - 1);
        assert_eq!(m.first(), Some(&(100 + LOG as u16 * 2 + 1)));
        // A packet older than the log counts as received but cannot be a duplicate of anything.
        r.record(101, 0, at(2));
        let rr = r.report(at(3)).expect("a report");
        assert_eq!(rr.total_lost, LOG as u32 * 3 + 1 - 3);
        // Nothing before the first packet is ever asked for.
        let mut fresh = Reception::new(1, 90_000, true);
        fresh.record(10, 0, at(0));
        fresh.record(12, 0, at(0));
        assert_eq!(missing(&mut fresh), vec![11]);
    }

    #[test]
    fn a_stream_reordered_at_its_start_begins_at_its_lowest_number() {
        let mut r = Reception::new(1, 90_000, true);
        for s in [3u16, 1, 2, 0, 2, 5] {
            r.record(s, 0, at(0));
        }
        let rr = r.report(at(1)).expect("a report");
        assert_eq!(rr.total_lost, 1, "only 4: the duplicate 2 does not hide it");
        assert_eq!(rr.fraction_lost, (256 / 6) as u8);
        assert_eq!(missing(&mut r), vec![4]);
    }

    /// Random streams with loss, reordering, duplicates and wraps, against a model that keeps
    /// every sequence number: the loss count is exact, and a NACK never asks for a packet that
    /// came, for one before the stream's start or for one outside the log.
    #[test]
    fn random_streams_agree_with_a_model() {
        let mut rng = crate::uplink::TestRng(0x9e37_79b9_7f4a_7c15u64);
        for round in 0..200 {
            let start = rng.below(65_536) as u16;
            let len = 50 + rng.below(3_000);
            // Delays of up to 40 places, well inside the log.
            let arrivals = rng.arrivals(start, len, 4);
            let mut r = Reception::new(1, 90_000, true);
            let mut seen = std::collections::HashSet::new();
            let mut highest = 0;
            for (k, &(_, seq)) in arrivals.iter().enumerate() {
                let i = seq.wrapping_sub(start) as u64;
                r.record(seq, 0, at(k as u64));
                seen.insert(i);
                highest = highest.max(i);
                if rng.below(100) == 0 {
                    let mut m = Vec::new();
                    r.missing(&mut m);
                    for seq in m {
                        let i = seq.wrapping_sub(start) as u64;
                        assert!(i < highest && highest - i < LOG as u64, "round {round}");
                        assert!(!seen.contains(&i), "round {round}: {i} came");
                    }
                }
            }
            let first = *seen.iter().min().expect("packets");
            let expected = highest - first + 1;
            let rr = r.report(at(1 << 20)).expect("a report");
            assert_eq!(
                rr.last_sequence_number as u16,
                start.wrapping_add(highest as u16)
            );
            // Delays stay well inside the log, so every duplicate is recognised.
            let lost = expected - seen.len() as u64;
            assert_eq!(rr.total_lost as u64, lost, "round {round}");
        }
    }
}
