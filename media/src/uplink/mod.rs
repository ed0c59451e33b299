//! [`Uplink`]: a publish connection's media, received past the peer connection.
//!
//! A publisher's media is most of what the SFU reads, and in one-to-one calls each packet read
//! is forwarded only once, so how a packet gets in costs as much as how it gets out. Walking it
//! through `rtc`'s read pipeline (demultiplexer, ICE and DTLS handlers, an SRTP handler that
//! parses the header twice and decrypts into a fresh buffer, handler queues, per-track
//! statistics) was a quarter of the SFU's time there. The uplink decrypts in place, in the
//! buffer the datagram arrived in, and records the packet's header in the connection's
//! feedback itself ([`SharedChain`]), so reports, NACKs and transport-wide-cc feedback still
//! cover it.
//!
//! It only takes streams the connection has already delivered once: the first packet of each
//! stream (which is what tells `rtc` a track or simulcast layer exists), RTX, padding-only probe
//! streams, RTCP, STUN and DTLS all still go through the connection.

use std::time::Instant;

use bytes::BytesMut;
use rtc::rtp;
use rtc::shared::marshal::Unmarshal;

use crate::error::Result;

mod feedback;
mod reception;
mod twcc;
use crate::srtp::{MasterKeys, SrtpReceiver};
pub(crate) use feedback::SharedChain;

/// What became of a datagram offered to the uplink.
pub(crate) enum Received {
    /// A media packet, decrypted, authenticated and recorded by the feedback, with the feedback's
    /// deadline after it: reading a packet can only bring that forward (a stream's first packet
    /// starts its timers).
    Media(rtp::Packet, Option<Instant>),
    /// A packet of one of its streams that failed (forged, replayed, malformed): dropped, as the
    /// connection would have dropped it.
    Dropped,
    /// Not for the uplink: the connection reads it.
    NotMine(BytesMut),
}

/// A publish connection's receive path for media of streams it already knows.
pub(crate) struct Uplink {
    srtp: SrtpReceiver,
    chain: SharedChain,
}

impl Uplink {
    /// An uplink decrypting with the remote side's keys and feeding the connection's chain.
    pub fn new(remote: &MasterKeys, chain: SharedChain) -> Result<Self> {
        Ok(Self {
            srtp: SrtpReceiver::new(remote)?,
            chain,
        })
    }

    /// The SRTP profile it decrypts.
    #[cfg(test)]
    pub fn profile(&self) -> crate::srtp::Profile {
        self.srtp.profile()
    }

    /// Takes over a stream the connection has just delivered a packet of, continuing its
    /// packet index where the connection's SRTP context began it.
    pub fn adopt(&mut self, ssrc: u32, seq: u16) {
        self.srtp.seed(ssrc, seq);
    }

    /// Receives one datagram.
    #[inline]
    pub fn receive(&mut self, mut data: BytesMut, now: Instant) -> Received {
        let Some(ssrc) = media_ssrc(&data).filter(|s| self.srtp.knows(*s)) else {
            return Received::NotMine(data);
        };
        let Some(header_len) = header_len(&data) else {
            return Received::Dropped;
        };
        let Ok(len) = self.srtp.unprotect(&mut data, header_len) else {
            return Received::Dropped;
        };
        data.truncate(len);
        let Ok(packet) = rtp::Packet::unmarshal(&mut data.freeze()) else {
            return Received::Dropped;
        };
        debug_assert_eq!(packet.header.ssrc, ssrc);
        match self.chain.record(&packet.header, now) {
            Some(deadline) => Received::Media(packet, deadline),
            None => Received::Dropped,
        }
    }
}

/// A small deterministic generator (xorshift64) for the uplink's randomised tests.
#[cfg(test)]
pub(crate) struct TestRng(pub u64);

#[cfg(test)]
impl TestRng {
    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }

    /// `count` packets numbered from `start`, one per `gap` µs, in arrival order: a tenth
    /// lost, a sixth delayed by up to 40 gaps, one in fifty arriving twice. (µs, number) pairs.
    pub fn arrivals(&mut self, start: u16, count: u64, gap: u64) -> Vec<(u64, u16)> {
        let mut out = Vec::new();
        for i in 0..count {
            if self.below(10) == 0 {
                continue;
            }
            let delay = if self.below(6) == 0 {
                self.below(40 * gap)
            } else {
                0
            };
            let at = i * gap + delay;
            let seq = start.wrapping_add(i as u16);
            out.push((at, seq));
            if self.below(50) == 0 {
                out.push((at + self.below(8 * gap), seq));
            }
        }
        out.sort();
        out
    }
}

/// The SSRC of an RTP (not RTCP, RFC 5761 §4) packet.
#[inline]
fn media_ssrc(d: &[u8]) -> Option<u32> {
    let rtp = d.len() >= 12 && d[0] >> 6 == 2 && !(192..=223).contains(&d[1]);
    rtp.then(|| u32::from_be_bytes([d[8], d[9], d[10], d[11]]))
}

/// The length of an RTP packet's header: fixed part, CSRCs, extension (RFC 3550 §5.1, §5.3.1).
#[inline]
fn header_len(d: &[u8]) -> Option<usize> {
    let mut len = 12 + 4 * (d.first()? & 0x0f) as usize;
    if d[0] & 0x10 != 0 {
        let words = u16::from_be_bytes([*d.get(len + 2)?, *d.get(len + 3)?]) as usize;
        len += 4 + 4 * words;
    }
    (len <= d.len()).then_some(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lengths_and_what_is_media() {
        let mut p = vec![0x80, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7, 0xaa, 0xbb];
        assert_eq!(header_len(&p), Some(12));
        assert_eq!(media_ssrc(&p), Some(7));
        p[0] = 0x82; // two CSRCs: longer than the packet
        assert_eq!(header_len(&p), None);
        // An extension of one word after the fixed header.
        let mut x = vec![0x90, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7];
        x.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x10, 0xff, 0, 0, 0x55]);
        assert_eq!(header_len(&x), Some(20));
        x.truncate(14);
        assert_eq!(header_len(&x), None, "extension header cut off");
        let mut rtcp = p.clone();
        rtcp[1] = 200;
        assert_eq!(media_ssrc(&rtcp), None, "a sender report");
        assert_eq!(media_ssrc(&[0x16, 0xfe, 0xfd]), None, "DTLS");
        assert_eq!(
            media_ssrc(&[0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42]),
            None,
            "STUN"
        );
    }
}
