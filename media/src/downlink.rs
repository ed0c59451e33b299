//! The send side of one subscriber connection: where its media goes (the ICE-selected route),
//! how it is protected (our SRTP sender, keyed from the connection's DTLS-SRTP) and how fast it
//! may go (TWCC numbering and the send-side estimate). Forwarded packets and repairs are built
//! once, directly into the datagram that leaves; RTCP still goes through the peer connection.

use std::time::{Duration, Instant};

use rtc::rtcp::transport_feedbacks::transport_layer_cc::TransportLayerCc;
use rtc::shared::TransportContext;

use crate::bwe::{MediaId, SendSideBwe};
use crate::net::outbox::Wire;
use crate::srtp::{MasterKeys, SrtpSender};

/// How often each outgoing stream gets a sender report (RFC 3550 §6.2 for a small session;
/// browsers use it for lip sync and round-trip time).
pub(crate) const REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// One RTP packet to send, as the downtrack rewrote it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Outgoing<'a> {
    pub ssrc: u32,
    pub payload_type: u8,
    pub seq: u16,
    pub timestamp: u32,
    pub marker: bool,
    /// The stream's rollover counter for `seq`.
    pub roc: u32,
    /// For an RTX packet, the original sequence number that precedes the payload (RFC 4588).
    pub osn: Option<u16>,
    /// Whether this is the packet's first transmission to the subscriber (not a repair): the
    /// subscriber's feedback confirming it arrived releases the publisher's cached copy.
    pub first: bool,
    pub payload: &'a [u8],
}

/// A subscriber connection's media sender.
pub(crate) struct Downlink {
    srtp: SrtpSender,
    bwe: SendSideBwe,
    /// The negotiated transport-wide-cc header extension id, if the subscriber offered it.
    twcc_ext: Option<u8>,
    route: TransportContext,
    pub last_report: Option<Instant>,
}

impl Downlink {
    /// A sender for a connection whose DTLS-SRTP produced `keys`, currently reached via `route`.
    pub fn new(
        keys: &MasterKeys,
        twcc_ext: Option<u8>,
        route: TransportContext,
        now: Instant,
    ) -> crate::Result<Self> {
        let mut link = Self {
            srtp: SrtpSender::new(keys)?,
            bwe: SendSideBwe::new(now),
            twcc_ext: None,
            route,
            last_report: None,
        };
        link.set_twcc_ext(twcc_ext);
        Ok(link)
    }

    /// The ICE-selected route changed (ICE restart, new nomination).
    pub fn set_route(&mut self, route: TransportContext) {
        self.route = route;
    }

    /// The transport-wide-cc extension id (re)negotiated on the connection.
    pub fn set_twcc_ext(&mut self, id: Option<u8>) {
        self.twcc_ext = id.filter(|id| (1..=14).contains(id));
    }

    /// The send-side estimate in bits per second.
    pub fn estimate_bps(&self) -> u64 {
        self.bwe.target_bps()
    }

    /// The round trip to the subscriber, once feedback has measured it.
    pub fn rtt(&self) -> Option<Duration> {
        self.bwe.rtt()
    }

    /// Feeds the subscriber's TWCC feedback to the estimate, and adds the first transmissions
    /// it reports arrived to `arrived`.
    pub fn on_feedback(
        &mut self,
        now: Instant,
        feedback: &TransportLayerCc,
        arrived: &mut Vec<MediaId>,
    ) {
        self.bwe.on_feedback(now, feedback, arrived);
    }

    /// Builds, protects and queues one packet. Returns false if it could not be protected.
    #[inline]
    pub fn send(&mut self, out: &mut impl Wire, p: Outgoing<'_>, now: Instant) -> bool {
        let Self {
            srtp,
            bwe,
            twcc_ext,
            route,
            ..
        } = self;
        let mut ok = false;
        out.push_with(route, Some(now), |buf| {
            let extension = twcc_ext.is_some();
            buf.push(0x80 | (extension as u8) << 4);
            buf.push((p.marker as u8) << 7 | (p.payload_type & 0x7f));
            buf.extend_from_slice(&p.seq.to_be_bytes());
            buf.extend_from_slice(&p.timestamp.to_be_bytes());
            buf.extend_from_slice(&p.ssrc.to_be_bytes());
            let size = buf.len()
                + if extension { 8 } else { 0 }
                + p.osn.map_or(0, |_| 2)
                + p.payload.len()
                + srtp.profile().tag_len();
            if let Some(id) = *twcc_ext {
                // RFC 8285 one-byte form: one 2-byte element, padded to a word.
                let media = p.first.then_some(MediaId {
                    ssrc: p.ssrc,
                    seq: p.seq,
                });
                let seq = bwe.on_send(size, media, now);
                buf.extend_from_slice(&[0xbe, 0xde, 0x00, 0x01, id << 4 | 1]);
                buf.extend_from_slice(&seq.to_be_bytes());
                buf.push(0);
            }
            let header_len = buf.len();
            if let Some(osn) = p.osn {
                buf.extend_from_slice(&osn.to_be_bytes());
            }
            buf.extend_from_slice(p.payload);
            ok = srtp.protect(buf, header_len, p.ssrc, p.seq, p.roc).is_ok();
            ok
        });
        ok
    }
}
