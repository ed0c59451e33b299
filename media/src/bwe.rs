//! Send-side bandwidth estimation for one subscriber connection: every packet we send carries a
//! transport-wide sequence number (TWCC), the subscriber reports when each arrived, and GCC
//! (`rtc`'s implementation: delay trend plus loss) turns that into a target bitrate.
//!
//! The send history is a fixed ring indexed by sequence number rather than maps: one slot write
//! per packet on the forwarding path, no allocation, no pruning pass.

use std::time::{Duration, Instant};

use rtc::interceptor::{BandwidthEstimator, Gcc, PacketReport, convert_twcc};
use rtc::rtcp::transport_feedbacks::transport_layer_cc::TransportLayerCc;

/// Packets remembered (16 bytes each): feedback normally arrives within 100 ms, and at 1,000
/// packets/s this still covers one second.
const SLOTS: usize = 1024;

thread_local! {
    /// GCC's reports for the feedback being handled. One feedback names every packet of its
    /// interval, up to [`SLOTS`] of ours at ~80 bytes each: one scratch vector per worker
    /// thread rather than one per connection (it stays as large as the largest feedback).
    static REPORTS: std::cell::RefCell<Vec<PacketReport>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// One sent packet: sequence number, size (0 = empty or already reported), departure in
/// microseconds since the estimator started, wrapping (only ages under ~71 minutes matter),
/// and which media packet it was.
#[derive(Debug, Clone, Copy, Default)]
struct Sent {
    seq: u16,
    size: u16,
    at_us: u32,
    /// The media packet, if `is_media` (kept apart so the slot stays 16 bytes).
    media_ssrc: u32,
    media_seq: u16,
    is_media: bool,
}

/// A media packet as the subscriber numbers it: its stream's SSRC and sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MediaId {
    pub ssrc: u32,
    pub seq: u16,
}

/// TWCC numbering, send history and GCC for one connection.
pub struct SendSideBwe {
    epoch: Instant,
    next_seq: u16,
    /// How many sequence numbers were handed out (extends `next_seq` for ordering reports).
    issued: u64,
    slots: Vec<Sent>,
    gcc: Gcc,
    /// Smoothed round trip: from a packet leaving to the feedback on it arriving, for the
    /// newest packet of each feedback (the receiver's feedback interval makes it err long).
    rtt: Option<Duration>,
}

impl SendSideBwe {
    /// An estimator starting at GCC's initial bitrate.
    pub fn new(now: Instant) -> Self {
        Self {
            epoch: now,
            next_seq: 1,
            issued: 0,
            slots: vec![Sent::default(); SLOTS],
            gcc: Gcc::default(),
            rtt: None,
        }
    }

    /// Records a packet of `size` bytes leaving now; returns its transport-wide sequence number.
    /// `media` names a first transmission, whose arrival the feedback will confirm.
    #[inline]
    pub fn on_send(&mut self, size: usize, media: Option<MediaId>, now: Instant) -> u16 {
        let seq = self.next_seq;
        self.next_seq = seq.wrapping_add(1);
        self.issued += 1;
        self.slots[seq as usize % SLOTS] = Sent {
            seq,
            size: size.clamp(1, u16::MAX as usize) as u16,
            at_us: self.micros(now),
            media_ssrc: media.map_or(0, |m| m.ssrc),
            media_seq: media.map_or(0, |m| m.seq),
            is_media: media.is_some(),
        };
        seq
    }

    /// Joins one TWCC feedback with the send history and updates the estimate. Returns how many
    /// of our packets it reported on (unknown and already reported ones are skipped), and adds
    /// the media packets it reported arrived to `arrived`: each at most once, since a packet is
    /// reported only the first time feedback names it.
    pub fn on_feedback(
        &mut self,
        now: Instant,
        feedback: &TransportLayerCc,
        arrived: &mut Vec<MediaId>,
    ) -> usize {
        REPORTS.with_borrow_mut(|reports| {
            reports.clear();
            self.join(now, feedback, reports, arrived);
            reports.sort_by_key(|r| r.id);
            self.gcc.on_reports(now, reports);
            if let Some(sample) = reports
                .iter()
                .filter(|r| r.arrived)
                .map(|r| now.saturating_duration_since(r.departure))
                .min()
            {
                self.rtt = Some(self.rtt.map_or(sample, |rtt| (rtt * 7 + sample) / 8));
            }
            reports.len()
        })
    }

    /// The packets of `feedback` that are in the send history, as GCC's reports.
    fn join(
        &mut self,
        now: Instant,
        feedback: &TransportLayerCc,
        reports: &mut Vec<PacketReport>,
        arrived: &mut Vec<MediaId>,
    ) {
        let now_us = self.micros(now);
        let last = self.next_seq.wrapping_sub(1);
        for ack in convert_twcc(feedback) {
            let slot = &mut self.slots[ack.sequence_number as usize % SLOTS];
            if slot.size == 0 || slot.seq != ack.sequence_number {
                continue;
            }
            let age = Duration::from_micros(now_us.wrapping_sub(slot.at_us) as u64);
            let behind = last.wrapping_sub(ack.sequence_number) as u64;
            reports.push(PacketReport {
                ssrc: 0,
                id: self.issued.saturating_sub(1 + behind),
                rtp_sequence_number: 0,
                is_twcc: true,
                twcc_sequence_number: ack.sequence_number,
                size: slot.size as usize,
                arrived: ack.arrived,
                departure: now.checked_sub(age).unwrap_or(self.epoch),
                arrival: ack.arrival,
                ecn: ack.ecn,
            });
            if ack.arrived && slot.is_media {
                arrived.push(MediaId {
                    ssrc: slot.media_ssrc,
                    seq: slot.media_seq,
                });
            }
            slot.size = 0;
        }
    }

    /// The smoothed round-trip time, once feedback has arrived.
    pub fn rtt(&self) -> Option<Duration> {
        self.rtt
    }

    /// The target bitrate in bits per second.
    pub fn target_bps(&self) -> u64 {
        self.gcc.target_bitrate() as u64
    }

    fn micros(&self, now: Instant) -> u32 {
        now.saturating_duration_since(self.epoch).as_micros() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const _: () = assert!(std::mem::size_of::<Sent>() == 16);
    use rtc::rtcp::transport_feedbacks::transport_layer_cc::{
        PacketStatusChunk, RecvDelta, RunLengthChunk, StatusChunkTypeTcc, SymbolTypeTcc,
    };

    /// Feedback for `count` packets from `base`, all received `spacing_us` apart, or all lost.
    fn feedback(
        base: u16,
        count: u16,
        spacing_us: i64,
        received: bool,
        fb: u8,
    ) -> TransportLayerCc {
        let symbol = if received {
            SymbolTypeTcc::PacketReceivedSmallDelta
        } else {
            SymbolTypeTcc::PacketNotReceived
        };
        TransportLayerCc {
            sender_ssrc: 1,
            media_ssrc: 2,
            base_sequence_number: base,
            packet_status_count: count,
            reference_time: 1,
            fb_pkt_count: fb,
            packet_chunks: vec![PacketStatusChunk::RunLengthChunk(RunLengthChunk {
                type_tcc: StatusChunkTypeTcc::RunLengthChunk,
                packet_status_symbol: symbol,
                run_length: count,
            })],
            recv_deltas: if received {
                (0..count)
                    .map(|_| RecvDelta {
                        type_tcc_packet: SymbolTypeTcc::PacketReceivedSmallDelta,
                        delta: spacing_us,
                    })
                    .collect()
            } else {
                vec![]
            },
        }
    }

    #[test]
    fn sequence_numbers_are_consecutive_and_wrap() {
        let now = Instant::now();
        let mut b = SendSideBwe::new(now);
        b.next_seq = 65535;
        assert_eq!(b.on_send(1200, None, now), 65535);
        assert_eq!(b.on_send(1200, None, now), 0);
        assert_eq!(b.on_send(1200, None, now), 1);
    }

    #[test]
    fn heavy_loss_lowers_the_estimate_and_clean_delivery_raises_it() {
        let t0 = Instant::now();
        let mut b = SendSideBwe::new(t0);
        let start = b.target_bps();
        let mut now = t0;
        // Half of every batch lost, for two seconds.
        for round in 0..20u16 {
            let base = b.next_seq;
            for _ in 0..20 {
                now += Duration::from_millis(5);
                b.on_send(1200, None, now);
            }
            now += Duration::from_millis(20);
            b.on_feedback(
                now,
                &feedback(base, 10, 5000, true, round as u8),
                &mut Vec::new(),
            );
            b.on_feedback(
                now,
                &feedback(base.wrapping_add(10), 10, 0, false, round as u8),
                &mut Vec::new(),
            );
        }
        let lossy = b.target_bps();
        assert!(
            lossy < start,
            "estimate fell under loss: {start} -> {lossy}"
        );
        // Then everything arrives, paced as sent, for ten seconds.
        for round in 0..200u16 {
            let base = b.next_seq;
            for _ in 0..20 {
                now += Duration::from_millis(2);
                b.on_send(1200, None, now);
            }
            now += Duration::from_millis(10);
            b.on_feedback(
                now,
                &feedback(base, 20, 2000, true, round as u8),
                &mut Vec::new(),
            );
        }
        assert!(
            b.target_bps() > lossy,
            "estimate recovered: {lossy} -> {}",
            b.target_bps()
        );
    }

    #[test]
    fn round_trip_follows_the_feedback_delay() {
        let t0 = Instant::now();
        let mut b = SendSideBwe::new(t0);
        assert_eq!(b.rtt(), None);
        let mut now = t0;
        for round in 0..40u16 {
            let base = b.next_seq;
            for _ in 0..5 {
                now += Duration::from_millis(10);
                b.on_send(1000, None, now);
            }
            // The newest packet's feedback comes back 80 ms after it left.
            b.on_feedback(
                now + Duration::from_millis(80),
                &feedback(base, 5, 10_000, true, round as u8),
                &mut Vec::new(),
            );
        }
        let rtt = b.rtt().expect("measured").as_millis();
        assert!((78..=82).contains(&rtt), "rtt {rtt} ms");
    }

    #[test]
    fn feedback_for_unknown_or_repeated_packets_is_ignored() {
        let now = Instant::now();
        let mut b = SendSideBwe::new(now);
        let before = b.target_bps();
        assert_eq!(
            b.on_feedback(now, &feedback(500, 10, 1000, false, 0), &mut Vec::new()),
            0,
            "never sent"
        );
        let base = b.next_seq;
        b.on_send(1000, None, now);
        assert_eq!(
            b.on_feedback(now, &feedback(base, 1, 1000, true, 1), &mut Vec::new()),
            1
        );
        assert_eq!(
            b.on_feedback(now, &feedback(base, 1, 1000, true, 2), &mut Vec::new()),
            0,
            "reported once"
        );
        assert!(b.target_bps() >= before / 2);
    }

    #[test]
    fn feedback_confirms_first_transmissions_that_arrived_once() {
        let now = Instant::now();
        let mut b = SendSideBwe::new(now);
        let media = |seq| MediaId { ssrc: 7, seq };
        let base = b.next_seq;
        b.on_send(1000, Some(media(100)), now);
        b.on_send(1000, None, now); // a repair
        b.on_send(1000, Some(media(101)), now);
        b.on_send(1000, Some(media(102)), now);
        let mut arrived = Vec::new();
        b.on_feedback(now, &feedback(base, 3, 1000, true, 0), &mut arrived);
        b.on_feedback(
            now,
            &feedback(base.wrapping_add(3), 1, 0, false, 1),
            &mut arrived,
        );
        assert_eq!(
            arrived,
            [media(100), media(101)],
            "the repair and the lost one are not"
        );
        // Feedback repeated, and a late arrival of what was reported lost: each packet's first
        // report is the one that counts.
        arrived.clear();
        b.on_feedback(now, &feedback(base, 4, 1000, true, 2), &mut arrived);
        assert_eq!(arrived, []);
    }

    #[test]
    fn a_large_feedback_reports_every_packet_and_the_scratch_stays_bounded() {
        let mut now = Instant::now();
        let mut b = SendSideBwe::new(now);
        let base = b.next_seq;
        for _ in 0..1000 {
            now += Duration::from_micros(50);
            b.on_send(1200, None, now);
        }
        for fb in 0..3 {
            assert_eq!(
                b.on_feedback(now, &feedback(base, 1000, 50, true, fb), &mut Vec::new()),
                1000 * (fb == 0) as usize
            );
        }
        let kept = REPORTS.with_borrow(|r| r.capacity());
        assert!(kept <= SLOTS, "{kept} reports kept allocated");
    }
}
