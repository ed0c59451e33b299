//! Retransmissions of simulcast layers, named only by the repaired-stream-id extension.
//!
//! A browser that publishes simulcast declares no SSRCs: each layer's media stream is named by
//! its RID header extension, and each layer's RTX stream (RFC 4588) by RRID, the RID of the
//! layer it repairs. The `rtc` core binds RTX streams declared by SSRC (`a=ssrc-group:FID`) but
//! not these, so a publisher's answers to our NACKs would be dropped and loss on its uplink
//! would reach every subscriber. [`RridRepair`] learns which SSRC carries which layer and turns
//! each RTX packet back into the packet it repairs, before anything else reads it.

use std::collections::HashMap;

use bytes::Bytes;
use rtc::rtp;

/// At most this many SSRCs are remembered per connection; past it the map starts over (a
/// publisher churning SSRCs gets relearned, never unbounded memory).
const MAX_STREAMS: usize = 64;

/// Header extension ids negotiated on one connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExtIds {
    /// `urn:ietf:params:rtp-hdrext:sdes:mid`
    pub mid: Option<u8>,
    /// `urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id`
    pub rid: Option<u8>,
    /// `urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id`
    pub rrid: Option<u8>,
}

impl ExtIds {
    /// Fills the ids still unknown from a stream's negotiated extensions (uri, id).
    pub fn learn<'a>(&mut self, extensions: impl IntoIterator<Item = (&'a str, u16)>) {
        for (uri, id) in extensions {
            let slot = match uri {
                rtc::sdp::extmap::SDES_MID_URI => &mut self.mid,
                rtc::sdp::extmap::SDES_RTP_STREAM_ID_URI => &mut self.rid,
                rtc::sdp::extmap::SDES_REPAIR_RTP_STREAM_ID_URI => &mut self.rrid,
                _ => continue,
            };
            if slot.is_none() {
                *slot = u8::try_from(id).ok();
            }
        }
    }
}

/// What an SSRC was found to carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    /// Media the core knows how to route (a layer, or a stream declared in the SDP).
    Media,
    /// RTX repairing the media stream `ssrc`, whose payload type is `payload_type`.
    Repair { ssrc: u32, payload_type: u8 },
}

/// One simulcast layer as seen on the wire.
#[derive(Debug, Clone)]
struct Layer {
    mid: Bytes,
    rid: Bytes,
    ssrc: u32,
    payload_type: u8,
}

/// What to do with a packet after [`RridRepair::unwrap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Pass it on (unchanged, or now carrying the repaired packet).
    Keep,
    /// An RTX packet with nothing to repair (a padding-only bandwidth probe): drop it.
    Drop,
}

/// Turns RRID-named RTX packets of one connection back into the media packets they repair.
#[derive(Debug, Default)]
pub struct RridRepair {
    ids: ExtIds,
    streams: HashMap<u32, Stream>,
    layers: Vec<Layer>,
}

impl RridRepair {
    /// A repairer that knows nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Extension ids of the connection, as streams get bound.
    pub fn learn_extensions<'a>(&mut self, extensions: impl IntoIterator<Item = (&'a str, u16)>) {
        self.ids.learn(extensions);
    }

    /// Forgets a stream that was unbound, and any repair stream pointing at it.
    pub fn forget(&mut self, ssrc: u32) {
        self.streams.retain(|&s, stream| {
            s != ssrc && !matches!(stream, Stream::Repair { ssrc: p, .. } if *p == ssrc)
        });
        self.layers.retain(|l| l.ssrc != ssrc);
    }

    /// Looks at one incoming packet; an RTX packet of a known layer is rewritten in place into
    /// the packet it repairs (RFC 4588 §4: original sequence number from the first two payload
    /// bytes, the layer's SSRC and payload type).
    ///
    /// Known SSRCs cost one map lookup; header extensions are read only for a new SSRC.
    #[inline]
    pub fn unwrap(&mut self, packet: &mut rtp::Packet) -> Verdict {
        match self.streams.get(&packet.header.ssrc) {
            Some(Stream::Media) => Verdict::Keep,
            Some(&Stream::Repair { ssrc, payload_type }) => restore(packet, ssrc, payload_type),
            None => self.classify(packet),
        }
    }

    /// A packet of an SSRC not seen before: a new layer, the RTX of one, or something else.
    fn classify(&mut self, packet: &mut rtp::Packet) -> Verdict {
        let ids = self.ids;
        if ids.rid.is_none() && ids.rrid.is_none() {
            // Nothing bound yet, so nothing can be decided: ask again on the next packet.
            return Verdict::Keep;
        }
        let ext = |id: Option<u8>| id.and_then(|id| packet.header.get_extension(id));
        let mid = ext(ids.mid).unwrap_or_default();
        let ssrc = packet.header.ssrc;
        if let Some(rid) = ext(ids.rid) {
            self.layers
                .retain(|l| l.ssrc != ssrc && !(l.mid == mid && l.rid == rid));
            if self.layers.len() >= MAX_STREAMS {
                self.layers.clear();
            }
            self.layers.push(Layer {
                mid,
                rid,
                ssrc,
                payload_type: packet.header.payload_type,
            });
            self.remember(ssrc, Stream::Media);
            return Verdict::Keep;
        }
        if let Some(rrid) = ext(ids.rrid) {
            let layer = self
                .layers
                .iter()
                .find(|l| l.rid == rrid && (l.mid == mid || mid.is_empty()));
            let Some(layer) = layer else {
                // Its layer has not shown up yet; the core drops this one.
                return Verdict::Keep;
            };
            let (media, payload_type) = (layer.ssrc, layer.payload_type);
            self.remember(
                ssrc,
                Stream::Repair {
                    ssrc: media,
                    payload_type,
                },
            );
            return restore(packet, media, payload_type);
        }
        self.remember(ssrc, Stream::Media);
        Verdict::Keep
    }

    fn remember(&mut self, ssrc: u32, stream: Stream) {
        if self.streams.len() >= MAX_STREAMS {
            self.streams.clear();
        }
        self.streams.insert(ssrc, stream);
    }
}

/// De-encapsulates an RTX packet in place; `Drop` when it carries no original packet.
fn restore(packet: &mut rtp::Packet, ssrc: u32, payload_type: u8) -> Verdict {
    if packet.payload.len() < 2 {
        return Verdict::Drop;
    }
    packet.header.sequence_number = u16::from_be_bytes([packet.payload[0], packet.payload[1]]);
    packet.header.ssrc = ssrc;
    packet.header.payload_type = payload_type;
    packet.header.padding = false;
    packet.payload = packet.payload.slice(2..);
    Verdict::Keep
}

#[cfg(test)]
mod tests {
    use super::*;

    const MID: u8 = 1;
    const RID: u8 = 2;
    const RRID: u8 = 3;

    fn repairer() -> RridRepair {
        let mut r = RridRepair::new();
        r.learn_extensions([
            (rtc::sdp::extmap::SDES_MID_URI, MID as u16),
            (rtc::sdp::extmap::SDES_RTP_STREAM_ID_URI, RID as u16),
            (rtc::sdp::extmap::SDES_REPAIR_RTP_STREAM_ID_URI, RRID as u16),
            ("urn:ietf:params:rtp-hdrext:ssrc-audio-level", 4),
        ]);
        r
    }

    fn packet(ssrc: u32, pt: u8, seq: u16, exts: &[(u8, &str)], payload: &[u8]) -> rtp::Packet {
        let mut header = rtp::header::Header {
            version: 2,
            payload_type: pt,
            sequence_number: seq,
            timestamp: 1234,
            ssrc,
            ..Default::default()
        };
        for (id, value) in exts {
            header
                .set_extension(*id, Bytes::copy_from_slice(value.as_bytes()))
                .expect("extension");
        }
        rtp::Packet {
            header,
            payload: Bytes::copy_from_slice(payload),
        }
    }

    #[test]
    fn rtx_of_a_layer_becomes_the_packet_it_repairs() {
        let mut r = repairer();
        for (ssrc, rid) in [(10, "q"), (11, "h"), (12, "f")] {
            let mut p = packet(ssrc, 96, 500, &[(MID, "0"), (RID, rid)], b"media");
            assert_eq!(r.unwrap(&mut p), Verdict::Keep);
            assert_eq!(p.header.ssrc, ssrc, "media passes untouched");
        }
        // RTX of the middle layer: OSN 0x01f3 = 499, then the original payload.
        let mut rtx = packet(21, 97, 7, &[(MID, "0"), (RRID, "h")], b"\x01\xf3media");
        assert_eq!(r.unwrap(&mut rtx), Verdict::Keep);
        assert_eq!(
            (
                rtx.header.ssrc,
                rtx.header.payload_type,
                rtx.header.sequence_number
            ),
            (11, 96, 499)
        );
        assert_eq!(&rtx.payload[..], b"media");
        assert_eq!(rtx.header.timestamp, 1234, "timestamp kept");
        // Later RTX packets of that SSRC no longer carry the extension (RFC 8852 allows it).
        let mut later = packet(21, 97, 8, &[], b"\x01\xf4more");
        assert_eq!(r.unwrap(&mut later), Verdict::Keep);
        assert_eq!((later.header.ssrc, later.header.sequence_number), (11, 500));
    }

    #[test]
    fn padding_only_probes_are_dropped() {
        let mut r = repairer();
        let mut p = packet(10, 96, 1, &[(MID, "0"), (RID, "q")], b"x");
        r.unwrap(&mut p);
        let mut probe = packet(20, 97, 1, &[(MID, "0"), (RRID, "q")], b"");
        assert_eq!(r.unwrap(&mut probe), Verdict::Drop);
        let mut probe = packet(20, 97, 2, &[], b"");
        assert_eq!(r.unwrap(&mut probe), Verdict::Drop);
    }

    #[test]
    fn same_rid_in_two_media_sections_is_told_apart_by_mid() {
        let mut r = repairer();
        r.unwrap(&mut packet(10, 96, 1, &[(MID, "0"), (RID, "q")], b"a"));
        r.unwrap(&mut packet(30, 98, 1, &[(MID, "2"), (RID, "q")], b"b"));
        let mut rtx = packet(40, 99, 1, &[(MID, "2"), (RRID, "q")], b"\x00\x05b");
        r.unwrap(&mut rtx);
        assert_eq!((rtx.header.ssrc, rtx.header.payload_type), (30, 98));
    }

    #[test]
    fn rtx_before_its_layer_and_other_streams_pass_untouched() {
        let mut r = repairer();
        // The layer has not been seen: left for the core, which drops what it cannot route.
        let mut early = packet(20, 97, 1, &[(MID, "0"), (RRID, "q")], b"\x00\x01x");
        assert_eq!(r.unwrap(&mut early), Verdict::Keep);
        assert_eq!(early.header.ssrc, 20);
        // Audio (no RID) and SSRC-declared streams are someone else's business.
        let mut audio = packet(50, 111, 9, &[(MID, "1")], b"opus");
        assert_eq!(r.unwrap(&mut audio), Verdict::Keep);
        assert_eq!((audio.header.ssrc, audio.header.sequence_number), (50, 9));
        // Once the layer appears, the same RTX SSRC is repaired.
        r.unwrap(&mut packet(10, 96, 2, &[(MID, "0"), (RID, "q")], b"x"));
        let mut rtx = packet(20, 97, 2, &[(MID, "0"), (RRID, "q")], b"\x00\x01x");
        r.unwrap(&mut rtx);
        assert_eq!((rtx.header.ssrc, rtx.header.sequence_number), (10, 1));
    }

    #[test]
    fn nothing_is_decided_before_extensions_are_known() {
        let mut r = RridRepair::new();
        let mut rtx = packet(20, 97, 1, &[(MID, "0"), (RRID, "q")], b"\x00\x01x");
        assert_eq!(r.unwrap(&mut rtx), Verdict::Keep);
        // Not remembered as plain media: learning the ids later still works.
        r.learn_extensions([
            (rtc::sdp::extmap::SDES_MID_URI, MID as u16),
            (rtc::sdp::extmap::SDES_RTP_STREAM_ID_URI, RID as u16),
            (rtc::sdp::extmap::SDES_REPAIR_RTP_STREAM_ID_URI, RRID as u16),
        ]);
        r.unwrap(&mut packet(10, 96, 1, &[(MID, "0"), (RID, "q")], b"x"));
        let mut rtx = packet(20, 97, 2, &[(MID, "0"), (RRID, "q")], b"\x00\x07x");
        r.unwrap(&mut rtx);
        assert_eq!((rtx.header.ssrc, rtx.header.sequence_number), (10, 7));
    }

    #[test]
    fn forgetting_a_layer_forgets_its_repair_stream() {
        let mut r = repairer();
        r.unwrap(&mut packet(10, 96, 1, &[(MID, "0"), (RID, "q")], b"x"));
        r.unwrap(&mut packet(
            20,
            97,
            1,
            &[(MID, "0"), (RRID, "q")],
            b"\x00\x01x",
        ));
        r.forget(10);
        let mut rtx = packet(20, 97, 2, &[], b"\x00\x02x");
        assert_eq!(r.unwrap(&mut rtx), Verdict::Keep);
        assert_eq!(rtx.header.ssrc, 20, "no longer rewritten");
    }

    #[test]
    fn memory_stays_bounded_under_ssrc_churn() {
        let mut r = repairer();
        for ssrc in 0..10_000u32 {
            let rid = format!("r{}", ssrc % 7);
            r.unwrap(&mut packet(ssrc, 96, 1, &[(MID, "0"), (RID, &rid)], b"x"));
        }
        assert!(r.streams.len() <= MAX_STREAMS);
        assert!(r.layers.len() <= MAX_STREAMS);
    }
}
