//! Sequence number and timestamp rewriting for one subscriber's view of a track.
//!
//! A subscriber sees one continuous RTP stream per track even though what feeds it changes: it
//! starts mid-stream at a keyframe, and simulcast switches move it between layers whose sequence
//! numbers and timestamps are unrelated. Each change of source opens an *epoch* whose offsets
//! make the first packet follow the last one sent, so the receiver never sees a gap or a jump.

use super::seq_diff;

/// How far behind the newest packet a late one may still be forwarded. The source's start
/// follows the stream at this distance, so comparisons never span half the sequence space
/// (where they would flip sign and refuse the whole stream).
pub const LATE_WINDOW: u16 = 0x4000;

/// Offsets in force since the last change of source.
#[derive(Debug, Clone, Copy)]
struct Epoch {
    /// First incoming sequence number of this epoch; older packets belong to the previous source.
    base_in_seq: u16,
    /// Highest incoming sequence number forwarded in this epoch.
    highest_in_seq: u16,
    seq_offset: u16,
    ts_offset: u32,
}

/// Rewrites incoming (sequence number, timestamp) pairs into one continuous outgoing stream.
#[derive(Debug, Clone, Default)]
pub struct Rewriter {
    epoch: Option<Epoch>,
    last_out_seq: u16,
    last_out_ts: u32,
}

impl Rewriter {
    /// A rewriter that has not forwarded anything yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether a source has been started.
    pub fn is_started(&self) -> bool {
        self.epoch.is_some()
    }

    /// Last sequence number and timestamp handed to the subscriber, if any.
    pub fn last_out(&self) -> Option<(u16, u32)> {
        self.epoch.map(|_| (self.last_out_seq, self.last_out_ts))
    }

    /// The current source's (sequence, timestamp) offsets: outgoing = incoming + offset.
    pub fn offsets(&self) -> Option<(u16, u32)> {
        self.epoch.map(|e| (e.seq_offset, e.ts_offset))
    }

    /// Starts a new source whose next packet is (`in_seq`, `in_ts`).
    ///
    /// The first source keeps its numbers; later ones continue right after the last packet sent,
    /// with the timestamp advanced by `ts_advance` clock ticks (the wall time elapsed since the
    /// last packet, at least 1 so two frames never share a timestamp).
    pub fn start_source(&mut self, in_seq: u16, in_ts: u32, ts_advance: u32) {
        let (seq_offset, ts_offset) = if self.epoch.is_some() {
            (
                self.last_out_seq.wrapping_add(1).wrapping_sub(in_seq),
                self.last_out_ts
                    .wrapping_add(ts_advance.max(1))
                    .wrapping_sub(in_ts),
            )
        } else {
            (0, 0)
        };
        self.epoch = Some(Epoch {
            base_in_seq: in_seq,
            highest_in_seq: in_seq.wrapping_sub(1),
            seq_offset,
            ts_offset,
        });
    }

    /// Rewrites one packet of the current source; `None` if it predates the source (a late
    /// packet of the previous layer) or no source was started.
    #[inline]
    pub fn rewrite(&mut self, in_seq: u16, in_ts: u32) -> Option<(u16, u32)> {
        let e = self.epoch.as_mut()?;
        if seq_diff(in_seq, e.base_in_seq) < 0 {
            return None;
        }
        let out = (
            in_seq.wrapping_add(e.seq_offset),
            in_ts.wrapping_add(e.ts_offset),
        );
        if seq_diff(in_seq, e.highest_in_seq) > 0 {
            e.highest_in_seq = in_seq;
            self.last_out_seq = out.0;
            self.last_out_ts = out.1;
            if seq_diff(in_seq, e.base_in_seq) > LATE_WINDOW as i16 {
                e.base_in_seq = in_seq.wrapping_sub(LATE_WINDOW);
            }
        }
        Some(out)
    }

    /// Drops the next in-order packet without leaving a hole in the outgoing numbering
    /// (e.g. padding-only packets). Out-of-order packets cannot be hidden and are left alone.
    pub fn skip(&mut self, in_seq: u16) {
        if let Some(e) = self.epoch.as_mut()
            && in_seq == e.highest_in_seq.wrapping_add(1)
        {
            e.highest_in_seq = in_seq;
            e.seq_offset = e.seq_offset.wrapping_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_source_passes_through() {
        let mut r = Rewriter::new();
        assert_eq!(r.rewrite(10, 1000), None);
        r.start_source(10, 1000, 0);
        assert_eq!(r.rewrite(10, 1000), Some((10, 1000)));
        assert_eq!(r.rewrite(11, 4000), Some((11, 4000)));
        assert_eq!(r.last_out(), Some((11, 4000)));
    }

    #[test]
    fn wraparound_is_continuous() {
        let mut r = Rewriter::new();
        r.start_source(65534, u32::MAX - 10, 0);
        let outs: Vec<_> = (0..4u16)
            .map(|i| {
                r.rewrite(
                    65534u16.wrapping_add(i),
                    (u32::MAX - 10).wrapping_add(i as u32 * 3000),
                )
            })
            .collect();
        assert_eq!(outs[0].map(|o| o.0), Some(65534));
        assert_eq!(outs[2].map(|o| o.0), Some(0));
        assert_eq!(outs[3].map(|o| o.0), Some(1));
        assert_eq!(outs[3].map(|o| o.1), Some(8989));
        // A packet older than the source start is refused, across the wrap too.
        assert_eq!(r.rewrite(65533, 0), None);
    }

    #[test]
    fn a_long_stream_keeps_flowing_and_refuses_only_very_late_packets() {
        let mut r = Rewriter::new();
        r.start_source(1, 0, 0);
        for i in 0..200_000u32 {
            let seq = (1 + i) as u16;
            assert_eq!(r.rewrite(seq, i), Some((seq, i)), "packet {i}");
        }
        let (last, _) = r.last_out().expect("sent");
        assert!(
            r.rewrite(last.wrapping_sub(100), 0).is_some(),
            "late but recent"
        );
        assert_eq!(r.rewrite(last.wrapping_sub(LATE_WINDOW + 1), 0), None);
    }

    #[test]
    fn switch_continues_numbering_without_gap() {
        let mut r = Rewriter::new();
        r.start_source(100, 9000, 0);
        r.rewrite(100, 9000);
        r.rewrite(101, 12000);
        // New layer: unrelated numbers, 33 ms later at 90 kHz.
        r.start_source(40000, 777, 2970);
        assert_eq!(r.rewrite(40000, 777), Some((102, 14970)));
        assert_eq!(r.rewrite(40001, 3777), Some((103, 17970)));
        // A late packet of the old layer is dropped, not sent with a colliding number.
        assert_eq!(r.rewrite(39990, 0), None);
        // Out-of-order within the epoch keeps its place and does not move last_out.
        assert_eq!(r.rewrite(40003, 9777), Some((105, 23970)));
        assert_eq!(r.rewrite(40002, 6777), Some((104, 20970)));
        assert_eq!(r.last_out(), Some((105, 23970)));
    }

    #[test]
    fn switch_across_wraparound() {
        let mut r = Rewriter::new();
        r.start_source(65535, 100, 0);
        r.rewrite(65535, 100);
        r.start_source(5, u32::MAX, 0);
        // ts_advance 0 still moves the clock by one tick.
        assert_eq!(r.rewrite(5, u32::MAX), Some((0, 101)));
        assert_eq!(r.rewrite(6, 0), Some((1, 102)));
    }

    #[test]
    fn skip_hides_in_order_drops() {
        let mut r = Rewriter::new();
        r.start_source(1, 0, 0);
        r.rewrite(1, 0);
        r.skip(2);
        r.skip(3);
        assert_eq!(r.rewrite(4, 0), Some((2, 0)));
        // A skip out of order changes nothing.
        r.skip(9);
        assert_eq!(r.rewrite(5, 0), Some((3, 0)));
    }
}
