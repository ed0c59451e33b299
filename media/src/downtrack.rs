//! One subscriber's view of one published track: which layer it gets and how packets are
//! renumbered so it sees a single continuous stream.

use std::time::Instant;

use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::RTCPeerConnection;
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtp;
use rtc::rtp_transceiver::RTCRtpSenderId;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RTCRtpRtxParameters,
    RtpCodecKind,
};

use crate::downlink::{Downlink, Outgoing};
use crate::net::outbox::Wire;
use crate::peer::random_u32;
use crate::rtp::codec::Codec;
use crate::rtp::rewrite::{LATE_WINDOW, Rewriter};
use crate::rtp::seq_diff;
use crate::srtp::Roc;
use crate::track::CachedPacket;
use crate::track::TrackId;

/// Sources remembered for answering NACKs: a NACK older than the last few layer switches
/// names a packet long gone from the cache anyway.
const SPANS: usize = 4;

/// A stretch of outgoing sequence numbers fed by one source: one layer, one set of offsets.
#[derive(Debug, Clone, Copy)]
struct Span {
    layer: usize,
    first_out: u16,
    seq_offset: u16,
    ts_offset: u32,
}

/// Where an outgoing packet came from, for repairing it from the publisher's cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// The publisher's layer.
    pub layer: usize,
    /// The publisher's sequence number on that layer.
    pub seq: u16,
    /// Add to the publisher's timestamp to get the one the subscriber saw.
    pub ts_offset: u32,
}

/// Layer choice and rewriting for one subscriber of one track; pure, no sockets.
#[derive(Debug, Clone)]
pub struct Forwarder {
    codec: Codec,
    clock_rate: u32,
    rewriter: Rewriter,
    current: Option<usize>,
    target: usize,
    last_at: Option<Instant>,
    /// Recent sources, newest last.
    spans: Vec<Span>,
}

impl Forwarder {
    /// A forwarder for a track of this codec and RTP clock rate, aiming at `target` layer.
    pub fn new(codec: Codec, clock_rate: u32, target: usize) -> Self {
        Self {
            codec,
            clock_rate,
            rewriter: Rewriter::new(),
            current: None,
            target,
            last_at: None,
            spans: Vec::with_capacity(SPANS),
        }
    }

    /// The publisher's packet behind an outgoing sequence number, if it was sent from one of
    /// the last few sources.
    pub fn origin(&self, out_seq: u16) -> Option<Origin> {
        let (last, _) = self.rewriter.last_out()?;
        if seq_diff(out_seq, last) > 0 {
            return None;
        }
        let span = self
            .spans
            .iter()
            .rev()
            .find(|s| seq_diff(out_seq, s.first_out) >= 0)?;
        Some(Origin {
            layer: span.layer,
            seq: out_seq.wrapping_sub(span.seq_offset),
            ts_offset: span.ts_offset,
        })
    }

    /// The track's codec.
    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// The layer being forwarded, if any.
    pub fn current(&self) -> Option<usize> {
        self.current
    }

    /// The layer wanted.
    pub fn target(&self) -> usize {
        self.target
    }

    /// Aims at another layer; the switch happens at that layer's next keyframe.
    pub fn set_target(&mut self, layer: usize) {
        self.target = layer;
    }

    /// Whether a keyframe of the target layer is needed before anything (more) can be sent.
    pub fn wants_keyframe(&self) -> bool {
        self.codec.is_video() && self.current != Some(self.target)
    }

    /// Decides on one packet of `layer`: the rewritten (sequence, timestamp), or `None` to drop.
    ///
    /// The current layer keeps flowing until the target layer shows a keyframe, then the
    /// stream moves over with continuous numbering; the timestamp advances by the wall time
    /// elapsed, so the receiver's jitter buffer sees no jump.
    #[inline]
    pub fn forward(
        &mut self,
        layer: usize,
        seq: u16,
        ts: u32,
        keyframe: bool,
        now: Instant,
    ) -> Option<(u16, u32)> {
        if self.current != Some(layer) {
            let decodable_start = keyframe || !self.codec.is_video();
            if layer != self.target || !decodable_start {
                return None;
            }
            let advance = self
                .last_at
                .map(|t| {
                    let us = now.saturating_duration_since(t).as_micros() as u64;
                    (us * self.clock_rate as u64 / 1_000_000) as u32
                })
                .unwrap_or(0);
            self.rewriter.start_source(seq, ts, advance);
            self.current = Some(layer);
            if let Some((seq_offset, ts_offset)) = self.rewriter.offsets() {
                if self.spans.len() == SPANS {
                    self.spans.remove(0);
                }
                self.spans.push(Span {
                    layer,
                    first_out: seq.wrapping_add(seq_offset),
                    seq_offset,
                    ts_offset,
                });
            }
        }
        let out = self.rewriter.rewrite(seq, ts)?;
        self.last_at = Some(now);
        // Keep the newest span's start within reach (as the rewriter does): a repair older
        // than the late window is long gone from the cache, and so are the spans before it.
        if let Some(span) = self.spans.last_mut()
            && seq_diff(out.0, span.first_out) > LATE_WINDOW as i16
        {
            span.first_out = out.0.wrapping_sub(LATE_WINDOW);
            let newest = self.spans.len() - 1;
            self.spans.drain(..newest);
        }
        Some(out)
    }

    /// Restarts from scratch (e.g. the subscriber's connection was renegotiated afresh): the
    /// next packet sent must again be a keyframe, but numbering stays continuous.
    pub fn resync(&mut self) {
        self.current = None;
    }
}

/// A subscriber's sender for one published track.
pub(crate) struct DownTrack {
    pub track: TrackId,
    pub sender_id: RTCRtpSenderId,
    /// The track id on the subscriber's connection (RTCP arrives tagged with it).
    pub rtc_track_id: String,
    pub ssrc: u32,
    /// Negotiated payload type on the subscriber's connection, once known.
    pub payload_type: Option<u8>,
    /// The RTX stream repairs go on (video), and its negotiated payload type once known;
    /// without one, repairs are resent in-band.
    pub rtx_ssrc: Option<u32>,
    pub rtx_payload_type: Option<u8>,
    rtx_seq: u16,
    pub mime: String,
    /// The publisher's format parameters (H.264 profile and packetization mode, VP9 profile),
    /// matched first when several payload types share a mime type.
    pub fmtp: String,
    pub forwarder: Forwarder,
    pub last_keyframe_ask: Option<Instant>,
    roc: Roc,
    rtx_roc: Roc,
    /// What sender reports say: packets and payload octets sent on the media SSRC, and the
    /// timestamp of the newest packet with when it left.
    sent_packets: u32,
    sent_octets: u32,
    last_sent: Option<(u32, Instant)>,
}

impl DownTrack {
    /// Adds a sender for a published track to a subscriber's connection (renegotiation must
    /// follow). Its stream id is the publisher, so clients group a participant's tracks.
    pub(crate) fn attach(
        pc: &mut RTCPeerConnection,
        track: TrackId,
        publisher: &str,
        rtc_track_id: String,
        kind: RtpCodecKind,
        codec: Codec,
        rtp_codec: RTCRtpCodec,
    ) -> crate::Result<DownTrack> {
        let ssrc = random_u32();
        // Repairs go on their own RTX stream (RFC 4588), so receivers count them as such.
        let rtx_ssrc = (kind == RtpCodecKind::Video).then(random_u32);
        let rtx = rtx_ssrc.map(|ssrc| RTCRtpRtxParameters { ssrc });
        let mst = MediaStreamTrack::new(
            publisher.to_owned(),
            rtc_track_id.clone(),
            rtc_track_id.clone(),
            kind,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    rtx,
                    ..Default::default()
                },
                codec: rtp_codec.clone(),
                ..Default::default()
            }],
        );
        let sender_id = pc.add_track(mst)?;
        Ok(DownTrack {
            track,
            sender_id,
            rtc_track_id,
            ssrc,
            payload_type: None,
            rtx_ssrc,
            rtx_payload_type: None,
            rtx_seq: random_u32() as u16,
            // Start low: the estimate is unknown until the connection has carried media.
            forwarder: Forwarder::new(codec, rtp_codec.clock_rate, 0),
            mime: rtp_codec.mime_type,
            fmtp: rtp_codec.sdp_fmtp_line,
            last_keyframe_ask: None,
            roc: Roc::default(),
            rtx_roc: Roc::default(),
            sent_packets: 0,
            sent_octets: 0,
            last_sent: None,
        })
    }

    /// Sends a packet again that this subscriber lost: `seq` as the subscriber numbered it,
    /// rebuilt from the publisher's cached packet. On the RTX stream (RFC 4588: the original
    /// sequence number ahead of the payload) when one was negotiated, else in-band.
    pub(crate) fn resend(
        &mut self,
        link: &mut Downlink,
        out: &mut impl Wire,
        seq: u16,
        ts_offset: u32,
        packet: &CachedPacket,
        now: Instant,
    ) {
        let Some(pt) = self.payload_type else {
            return;
        };
        let timestamp = packet.timestamp.wrapping_add(ts_offset);
        let p = match (self.rtx_ssrc, self.rtx_payload_type) {
            (Some(rtx_ssrc), Some(rtx_pt)) => {
                self.rtx_seq = self.rtx_seq.wrapping_add(1);
                Outgoing {
                    ssrc: rtx_ssrc,
                    payload_type: rtx_pt,
                    seq: self.rtx_seq,
                    timestamp,
                    marker: packet.marker,
                    roc: self.rtx_roc.next(self.rtx_seq),
                    osn: Some(seq),
                    first: false,
                    payload: &packet.payload,
                }
            }
            _ => Outgoing {
                ssrc: self.ssrc,
                payload_type: pt,
                seq,
                timestamp,
                marker: packet.marker,
                roc: self.roc.next(seq),
                osn: None,
                first: false,
                payload: &packet.payload,
            },
        };
        link.send(out, p, now);
    }

    /// Sends one publisher packet of `layer` to this subscriber, renumbered, if the forwarder
    /// takes it. Returns whether something was sent.
    #[inline]
    pub(crate) fn write(
        &mut self,
        link: &mut Downlink,
        out: &mut impl Wire,
        packet: &rtp::Packet,
        layer: usize,
        keyframe: bool,
        now: Instant,
    ) -> bool {
        let Some(pt) = self.payload_type else {
            return false;
        };
        let h = &packet.header;
        let Some((seq, ts)) =
            self.forwarder
                .forward(layer, h.sequence_number, h.timestamp, keyframe, now)
        else {
            return false;
        };
        let sent = link.send(
            out,
            Outgoing {
                ssrc: self.ssrc,
                payload_type: pt,
                seq,
                timestamp: ts,
                marker: h.marker,
                roc: self.roc.next(seq),
                osn: None,
                first: true,
                payload: &packet.payload,
            },
            now,
        );
        if sent {
            self.sent_packets = self.sent_packets.wrapping_add(1);
            self.sent_octets = self.sent_octets.wrapping_add(packet.payload.len() as u32);
            self.last_sent = Some((ts, now));
        }
        sent
    }

    /// A sender report for the media stream (RFC 3550 §6.4.1), once something was sent: the
    /// RTP time is the newest packet's timestamp advanced by the wall time since it left.
    pub(crate) fn sender_report(&self, now: Instant, ntp_now: u64) -> Option<SenderReport> {
        let (ts, at) = self.last_sent?;
        let elapsed = now.saturating_duration_since(at);
        let ticks = elapsed.as_micros() as u64 * self.forwarder.clock_rate as u64 / 1_000_000;
        Some(SenderReport {
            ssrc: self.ssrc,
            ntp_time: ntp_now,
            rtp_time: ts.wrapping_add(ticks as u32),
            packet_count: self.sent_packets,
            octet_count: self.sent_octets,
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn video_starts_on_keyframe() {
        let t = Instant::now();
        let mut f = Forwarder::new(Codec::Vp8, 90_000, 0);
        assert!(f.wants_keyframe());
        assert_eq!(f.forward(0, 10, 100, false, t), None);
        assert_eq!(f.forward(0, 11, 100, true, t), Some((11, 100)));
        assert_eq!(f.forward(0, 12, 3100, false, t), Some((12, 3100)));
        assert!(!f.wants_keyframe());
    }

    #[test]
    fn origin_maps_back_across_layer_switches() {
        let t = Instant::now();
        let mut f = Forwarder::new(Codec::Vp8, 90_000, 0);
        assert_eq!(f.origin(100), None, "nothing sent yet");
        for seq in 100..=102 {
            f.forward(0, seq, seq as u32 * 10, seq == 100, t);
        }
        f.set_target(2);
        f.forward(2, 65535, 5000, true, t);
        f.forward(2, 0, 8000, false, t);
        // Out 100..=102 came from layer 0 unchanged, 103 and 104 from layer 2 across its wrap.
        assert_eq!(
            f.origin(101),
            Some(Origin {
                layer: 0,
                seq: 101,
                ts_offset: 0
            })
        );
        let o = f.origin(104).expect("sent");
        assert_eq!((o.layer, o.seq), (2, 0));
        assert_eq!(
            8000u32.wrapping_add(o.ts_offset),
            4021,
            "the timestamp the subscriber saw"
        );
        assert_eq!(f.origin(105), None, "not sent yet");
        assert_eq!(f.origin(99), None, "before the first packet");
    }

    #[test]
    fn a_long_stream_is_forwarded_and_repairable_throughout() {
        let t = Instant::now();
        let mut f = Forwarder::new(Codec::Vp8, 90_000, 0);
        f.forward(0, 500, 0, true, t);
        f.set_target(2);
        for i in 0..150_000u32 {
            let seq = (7 + i) as u16;
            let out = f.forward(2, seq, i * 3000, i == 0, t).expect("forwarded");
            if i % 9973 == 0 {
                let o = f.origin(out.0).expect("repairable");
                assert_eq!((o.layer, o.seq), (2, seq), "packet {i}");
            }
        }
    }

    #[test]
    fn origin_forgets_old_sources() {
        let t = Instant::now();
        let mut f = Forwarder::new(Codec::Vp8, 90_000, 0);
        for round in 0..6u16 {
            let layer = (round % 2) as usize * 2;
            f.set_target(layer);
            f.forward(layer, round * 1000, 0, true, t);
        }
        assert_eq!(f.spans.len(), SPANS);
        // Six sources, one packet each: outgoing 0..=5; the first two are forgotten.
        assert_eq!(f.origin(1), None);
        assert_eq!(f.origin(2).map(|o| (o.layer, o.seq)), Some((0, 2000)));
        assert_eq!(f.origin(5).map(|o| (o.layer, o.seq)), Some((2, 5000)));
    }

    #[test]
    fn audio_needs_no_keyframe() {
        let mut f = Forwarder::new(Codec::Opus, 48_000, 0);
        assert!(!f.wants_keyframe());
        assert_eq!(f.forward(0, 5, 960, false, Instant::now()), Some((5, 960)));
    }

    #[test]
    fn layer_switch_waits_for_keyframe_and_has_no_gap() {
        let t0 = Instant::now();
        let mut f = Forwarder::new(Codec::Vp8, 90_000, 0);
        assert_eq!(f.forward(0, 100, 1000, true, t0), Some((100, 1000)));
        assert_eq!(f.forward(2, 5000, 77, true, t0), None, "not the target");
        f.set_target(2);
        assert!(f.wants_keyframe());
        // Low layer keeps flowing; high layer deltas are dropped.
        assert_eq!(f.forward(2, 5001, 3077, false, t0), None);
        let t1 = t0 + Duration::from_millis(33);
        assert_eq!(f.forward(0, 101, 3970, false, t1), Some((101, 3970)));
        // High layer keyframe 33 ms later: continues at 102, timestamp +2970 ticks.
        let t2 = t1 + Duration::from_millis(33);
        assert_eq!(f.forward(2, 5002, 6077, true, t2), Some((102, 6940)));
        assert_eq!(f.current(), Some(2));
        // Old layer now dropped, new one continues.
        assert_eq!(f.forward(0, 102, 6940, false, t2), None);
        assert_eq!(f.forward(2, 5003, 9077, false, t2), Some((103, 9940)));
        // And down again, across sequence wraparound of the low layer.
        f.set_target(0);
        assert_eq!(f.forward(0, 65535, 1, true, t2), Some((104, 9941)));
        assert_eq!(f.forward(0, 0, 3001, false, t2), Some((105, 12941)));
    }
}
