//! [`TwccRecorder`]: transport-wide congestion control feedback for a publisher
//! (draft-holmer-rmcat-transport-wide-cc-extensions-01 §3.1): which of its transport-wide
//! numbered packets arrived, and when, so that its bandwidth estimator can read the queueing
//! delay off the arrival times.

use std::time::Instant;

use rtc::rtcp::transport_feedbacks::transport_layer_cc::{
    PacketStatusChunk, RecvDelta, RunLengthChunk, StatusChunkTypeTcc, StatusVectorChunk,
    SymbolSizeTypeTcc, SymbolTypeTcc, TransportLayerCc,
};

/// Transport-wide numbers remembered (2 KiB of arrival times per publisher). Feedback goes
/// early once half of it waits: above 1 280 packets/s (about 10 Mbit/s of video) at the
/// 100 ms feedback interval, as libwebrtc's receivers also send it more often at high rates.
const WINDOW: usize = 256;
/// Arrival times are in units of 250 µs on the wire, reference times in units of 64 ms.
const DELTA_US: i64 = 250;
const REFERENCE_US: i64 = 64_000;
/// Most symbols a run-length chunk holds (13 bits), and a status vector chunk holds.
const MAX_RUN: usize = 0x1fff;
const ONE_BIT_SYMBOLS: usize = 14;
const TWO_BIT_SYMBOLS: usize = 7;

/// Arrival times of a publisher's recent transport-wide numbered packets, turned into
/// transport-wide-cc feedback packets on the feedback timer.
#[derive(Debug)]
pub(crate) struct TwccRecorder {
    /// Our SSRC as the feedback's sender.
    sender_ssrc: u32,
    /// The SSRC of the last packet recorded, as the feedback's media source.
    media_ssrc: u32,
    /// Arrival in µs since `epoch` of the numbers `next..=highest`, by number modulo the
    /// window; `NOT_RECEIVED` for numbers that did not arrive.
    arrivals: Box<[i64; WINDOW]>,
    epoch: Option<Instant>,
    /// The highest number recorded and the first not yet reported, unwrapped to 64 bits.
    highest: i64,
    next: i64,
    /// Feedback packets sent, modulo 256 (the receiver's loss detection of feedback).
    count: u8,
}

const NOT_RECEIVED: i64 = -1;

impl TwccRecorder {
    /// A recorder that signs its feedback with `sender_ssrc`.
    pub fn new(sender_ssrc: u32) -> Self {
        Self {
            sender_ssrc,
            media_ssrc: 0,
            arrivals: Box::new([NOT_RECEIVED; WINDOW]),
            epoch: None,
            highest: 0,
            next: 0,
            count: 0,
        }
    }

    /// Records that the packet numbered `seq` of stream `ssrc` arrived at `now`. Returns true
    /// when so much is waiting that feedback should go now rather than at the timer.
    #[inline]
    pub fn record(&mut self, seq: u16, ssrc: u32, now: Instant) -> bool {
        self.media_ssrc = ssrc;
        let Some(epoch) = self.epoch else {
            self.epoch = Some(now);
            // Unwrapped from 2^16 on, so that a number before the first stays positive.
            self.highest = (1 << 16) + seq as i64;
            self.next = self.highest;
            self.arrivals.fill(NOT_RECEIVED);
            self.arrivals[slot(self.highest)] = 0;
            return false;
        };
        let n = self.highest + seq.wrapping_sub(self.highest as u16) as i16 as i64;
        if n > self.highest {
            if n - self.next >= WINDOW as i64 {
                // Farther ahead than the window holds: what was not reported yet goes
                // unreported (the sender counts it as unacknowledged, not as lost).
                self.next = n - WINDOW as i64 + 1;
            }
            for m in (self.highest + 1).max(self.next)..n {
                self.arrivals[slot(m)] = NOT_RECEIVED;
            }
            self.highest = n;
        } else if self.highest - n >= WINDOW as i64 || self.arrival(n).is_some() {
            // Too old to say anything about, or a duplicate: the first arrival is what counts.
            return false;
        } else if n < self.next {
            // Late for the feedback that reported it missing: report again from here (what the
            // numbers between said is still remembered, and said again).
            self.next = n;
        }
        self.arrivals[slot(n)] = now.saturating_duration_since(epoch).as_micros() as i64;
        self.highest - self.next >= (WINDOW / 2) as i64
    }

    /// Feedback packets for everything recorded since the last feedback (none if nothing
    /// arrived); the numbers are then reported.
    pub fn feedback(&mut self) -> Vec<TransportLayerCc> {
        let mut out = Vec::new();
        if self.epoch.is_none() {
            return out;
        }
        while self.next <= self.highest {
            // The highest number always arrived, so there is a first.
            let Some(first) = (self.next..=self.highest).find(|m| self.arrival(*m).is_some())
            else {
                break;
            };
            let (fb, end) = self.build(self.next, first);
            out.push(fb);
            self.next = end;
        }
        self.next = self.highest + 1;
        out
    }

    fn arrival(&self, n: i64) -> Option<i64> {
        Some(self.arrivals[slot(n)]).filter(|t| *t != NOT_RECEIVED)
    }

    /// One feedback packet from `base`, whose first received packet is `first`; returns it and
    /// the first number it does not cover (a delta too large for 16 bits ends a packet).
    fn build(&mut self, base: i64, first: i64) -> (TransportLayerCc, i64) {
        let first_at = self.arrival(first).unwrap_or(0);
        let reference = first_at / REFERENCE_US;
        let mut clock = reference * REFERENCE_US;
        let mut symbols = Vec::new();
        let mut deltas = Vec::new();
        let mut n = base;
        while n <= self.highest {
            match self.arrival(n) {
                None => symbols.push(SymbolTypeTcc::PacketNotReceived),
                Some(at) => {
                    let units = (at - clock + DELTA_US / 2).div_euclid(DELTA_US);
                    let Ok(units) = i16::try_from(units) else {
                        break;
                    };
                    let symbol = if (0..=255).contains(&units) {
                        SymbolTypeTcc::PacketReceivedSmallDelta
                    } else {
                        SymbolTypeTcc::PacketReceivedLargeDelta
                    };
                    clock += units as i64 * DELTA_US;
                    symbols.push(symbol);
                    deltas.push(RecvDelta {
                        type_tcc_packet: symbol,
                        delta: units as i64 * DELTA_US,
                    });
                }
            }
            n += 1;
        }
        let fb = TransportLayerCc {
            sender_ssrc: self.sender_ssrc,
            media_ssrc: self.media_ssrc,
            base_sequence_number: base as u16,
            packet_status_count: symbols.len() as u16,
            // 24 bits, signed: wraps after 12 days of one connection.
            reference_time: (reference as u32) & 0x00ff_ffff,
            fb_pkt_count: self.count,
            packet_chunks: chunks(&symbols),
            recv_deltas: deltas,
        };
        self.count = self.count.wrapping_add(1);
        (fb, n)
    }
}

/// Where number `n` (unwrapped, positive) sits in the window.
#[inline]
fn slot(n: i64) -> usize {
    n as usize % WINDOW
}

/// Packet status chunks for `symbols`: a run-length chunk for a run too long for a vector,
/// else a one-bit vector when the next 14 hold no large delta, else a two-bit vector of 7.
fn chunks(symbols: &[SymbolTypeTcc]) -> Vec<PacketStatusChunk> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < symbols.len() {
        let rest = &symbols[i..];
        let run = rest
            .iter()
            .take_while(|s| **s == rest[0])
            .count()
            .min(MAX_RUN);
        let one_bit = rest.len().min(ONE_BIT_SYMBOLS);
        let taken = if run >= ONE_BIT_SYMBOLS || run == rest.len() {
            out.push(PacketStatusChunk::RunLengthChunk(RunLengthChunk {
                type_tcc: StatusChunkTypeTcc::RunLengthChunk,
                packet_status_symbol: rest[0],
                run_length: run as u16,
            }));
            run
        } else if !rest[..one_bit].contains(&SymbolTypeTcc::PacketReceivedLargeDelta) {
            out.push(vector(SymbolSizeTypeTcc::OneBit, &rest[..one_bit]));
            one_bit
        } else {
            let two_bit = rest.len().min(TWO_BIT_SYMBOLS);
            out.push(vector(SymbolSizeTypeTcc::TwoBit, &rest[..two_bit]));
            two_bit
        };
        i += taken;
    }
    out
}

fn vector(size: SymbolSizeTypeTcc, symbols: &[SymbolTypeTcc]) -> PacketStatusChunk {
    PacketStatusChunk::StatusVectorChunk(StatusVectorChunk {
        type_tcc: StatusChunkTypeTcc::StatusVectorChunk,
        symbol_size: size,
        symbol_list: symbols.to_vec(),
    })
}

#[cfg(test)]
/// What a sender reads from a feedback: arrival time (µs since the feedback's epoch) of
/// each number reported received, `None` for each reported not received.
pub(crate) fn decode(fb: &TransportLayerCc) -> Vec<(u16, Option<i64>)> {
    let mut out = Vec::new();
    let mut deltas = fb.recv_deltas.iter();
    let mut clock = fb.reference_time as i64 * REFERENCE_US;
    let mut seq = fb.base_sequence_number;
    let symbols = fb.packet_chunks.iter().flat_map(|c| match c {
        PacketStatusChunk::RunLengthChunk(r) => {
            vec![r.packet_status_symbol; r.run_length as usize]
        }
        PacketStatusChunk::StatusVectorChunk(v) => v.symbol_list.clone(),
    });
    for symbol in symbols.take(fb.packet_status_count as usize) {
        let at = match symbol {
            SymbolTypeTcc::PacketNotReceived => None,
            _ => {
                clock += deltas.next().expect("a delta per received packet").delta;
                Some(clock)
            }
        };
        out.push((seq, at));
        seq = seq.wrapping_add(1);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::shared::marshal::{Marshal, Unmarshal};
    use std::collections::HashMap;
    use std::time::Duration;

    /// Through the wire format and back, as the sender gets it.
    fn wire(fb: &TransportLayerCc) -> TransportLayerCc {
        let bytes = fb.marshal().expect("marshals");
        TransportLayerCc::unmarshal(&mut &bytes[..]).expect("parses")
    }

    #[test]
    fn feedback_reports_arrivals_to_250_us() {
        let t0 = Instant::now();
        let mut r = TwccRecorder::new(9);
        // 65 530..=65 535, 0..=20 with 2 and 3 lost, 7 late, a 70 ms stall before 15.
        let mut arrivals = Vec::new();
        let mut us = 0u64;
        for seq in (65_530u16..=65_535)
            .chain(0..=20)
            .filter(|s| ![2, 3, 7].contains(s))
        {
            us += if seq == 15 { 70_000 } else { 1_300 };
            arrivals.push((seq, us));
        }
        arrivals.push((7, us + 400));
        for (seq, us) in &arrivals {
            r.record(*seq, 0xabc, t0 + Duration::from_micros(*us));
        }
        let fbs: Vec<_> = r.feedback().iter().map(wire).collect();
        assert_eq!(fbs.len(), 1);
        assert_eq!((fbs[0].sender_ssrc, fbs[0].media_ssrc), (9, 0xabc));
        let got = decode(&fbs[0]);
        assert_eq!(got.len(), 27, "every number from the first to the highest");
        // Times are from the first arrival on.
        let sent: HashMap<u16, i64> = arrivals
            .iter()
            .map(|(s, us)| (*s, *us as i64 - 1_300))
            .collect();
        for (seq, at) in got {
            match (at, sent.get(&seq)) {
                (Some(at), Some(us)) => assert!((at - us).abs() <= 125, "{seq}: {at}"),
                (None, None) => {}
                other => panic!("{seq}: {other:?}"),
            }
        }
        assert!(r.feedback().is_empty(), "all reported");
    }

    #[test]
    fn chunks_cover_runs_vectors_and_large_deltas() {
        use SymbolTypeTcc::*;
        let c = chunks(&[PacketReceivedSmallDelta; 20]);
        assert_eq!(c.len(), 1, "one run");
        let mut mixed = vec![PacketReceivedSmallDelta, PacketNotReceived];
        mixed.extend([PacketReceivedSmallDelta; 12]);
        mixed.push(PacketReceivedLargeDelta);
        let c = chunks(&mixed);
        assert!(matches!(&c[0], PacketStatusChunk::StatusVectorChunk(v)
            if v.symbol_size == SymbolSizeTypeTcc::OneBit && v.symbol_list.len() == 14));
        assert!(matches!(&c[1], PacketStatusChunk::RunLengthChunk(r)
            if r.run_length == 1 && r.packet_status_symbol == PacketReceivedLargeDelta));
        let c = chunks(&[
            PacketReceivedLargeDelta,
            PacketReceivedSmallDelta,
            PacketNotReceived,
        ]);
        assert!(matches!(&c[0], PacketStatusChunk::StatusVectorChunk(v)
            if v.symbol_size == SymbolSizeTypeTcc::TwoBit && v.symbol_list.len() == 3));
    }

    /// Random numbering with loss, reordering and duplicates, feedback at random moments:
    /// every packet that arrived is reported received, at its first arrival to 125 µs, by
    /// the last feedback that covers its number; none that did not arrive is.
    #[test]
    fn random_arrivals_are_reported_as_they_happened() {
        let mut rng = crate::uplink::TestRng(0x2545_f491_4f6c_dd1du64);
        let t0 = Instant::now();
        for round in 0..100 {
            let start = rng.below(65_536) as u16;
            let mut r = TwccRecorder::new(1);
            let mut first_arrival: HashMap<u16, i64> = HashMap::new();
            let mut reported: HashMap<u16, Option<i64>> = HashMap::new();
            let count = 100 + rng.below(2_000);
            let arrivals = rng.arrivals(start, count, 500);
            let collect = |r: &mut TwccRecorder, reported: &mut HashMap<u16, Option<i64>>| {
                for fb in r.feedback() {
                    reported.extend(decode(&wire(&fb)));
                }
            };
            for (at, seq) in &arrivals {
                first_arrival.entry(*seq).or_insert(*at as i64);
                if r.record(*seq, 5, t0 + Duration::from_micros(*at)) || rng.below(30) == 0 {
                    collect(&mut r, &mut reported);
                }
            }
            collect(&mut r, &mut reported);
            let base = arrivals[0].0 as i64;
            for (seq, at) in &first_arrival {
                let got = reported.get(seq).copied().flatten();
                let got = got.unwrap_or_else(|| panic!("round {round}: {seq} not reported"));
                assert!((got - (at - base)).abs() <= 125, "round {round}: {seq}");
            }
            for (seq, at) in &reported {
                assert!(
                    at.is_none() || first_arrival.contains_key(seq),
                    "round {round}"
                );
            }
        }
    }

    #[test]
    fn a_full_window_asks_for_feedback_and_then_keeps_the_newest() {
        let t0 = Instant::now();
        let mut r = TwccRecorder::new(1);
        let due: Vec<bool> = (0..1_000u16)
            .map(|i| r.record(i, 1, t0 + Duration::from_micros(i as u64 * 100)))
            .collect();
        assert_eq!(
            due.iter().position(|d| *d),
            Some(WINDOW / 2),
            "half the window waits"
        );
        // Nobody sent feedback: only the newest window's worth is still reported.
        let got: Vec<_> = r.feedback().iter().flat_map(|f| decode(&wire(f))).collect();
        assert_eq!(got.len(), WINDOW);
        assert_eq!(got.first().map(|g| g.0), Some(1_000 - WINDOW as u16));
        assert!(got.iter().all(|(_, at)| at.is_some()));
    }
}
