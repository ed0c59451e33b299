//! A published stream: its codec, its simulcast layers and keyframe-request throttling.

use std::time::{Duration, Instant};

use rtc::rtp_transceiver::RTCRtpReceiverId;
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodec, RtpCodecKind};

use crate::rtp::codec::Codec;

/// Identifies a published track inside the SFU (unique across rooms).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrackId(pub u64);

/// Most simulcast layers a track carries.
pub const MAX_LAYERS: usize = 3;

/// One simulcast encoding (or the single encoding of a plain track).
#[derive(Debug, Clone)]
pub(crate) struct Layer {
    pub ssrc: u32,
    #[allow(dead_code)]
    pub rid: Option<String>,
    /// Quality rank: 0 lowest.
    pub index: usize,
    pub bitrate: BitrateMeter,
}

/// A published track.
pub(crate) struct Track {
    pub id: TrackId,
    /// The track's id on the publisher's connection (its msid track id).
    pub rtc_track_id: String,
    pub receiver_id: RTCRtpReceiverId,
    pub kind: RtpCodecKind,
    pub codec: Codec,
    pub rtp_codec: RTCRtpCodec,
    pub layers: Vec<Layer>,
    pub keyframes: KeyframeThrottle,
    /// Layer of the last keyframe request the throttle held back.
    pub pending_keyframe_layer: Option<usize>,
    /// Negotiated id of the audio-level header extension, for audio tracks that carry it.
    pub audio_level_ext: Option<u8>,
    /// Layers some subscriber needs, as last told to the publisher.
    pub needed: [bool; MAX_LAYERS],
}

impl Track {
    /// The layer a packet with this SSRC belongs to.
    #[inline]
    pub fn layer_of(&self, ssrc: u32) -> Option<usize> {
        self.layers.iter().find(|l| l.ssrc == ssrc).map(|l| l.index)
    }

    /// Adds a layer seen for the first time, ranking it by its RID.
    pub fn add_layer(&mut self, ssrc: u32, rid: Option<String>) {
        if self.layers.iter().any(|l| l.ssrc == ssrc) || self.layers.len() >= MAX_LAYERS {
            return;
        }
        let index = rid
            .as_deref()
            .and_then(rid_rank)
            .unwrap_or(self.layers.len());
        self.layers.push(Layer {
            ssrc,
            rid,
            index,
            bitrate: BitrateMeter::default(),
        });
    }

    /// Whether the track is simulcast (more than one layer seen).
    pub fn is_simulcast(&self) -> bool {
        self.layers.len() > 1
    }

    /// (layer index, measured bits per second) of every layer.
    pub fn layer_rates(&self) -> Vec<(usize, u64)> {
        self.layers
            .iter()
            .map(|l| (l.index, l.bitrate.bps))
            .collect()
    }

    /// The SSRC of a layer, for keyframe requests.
    pub fn ssrc_of(&self, index: usize) -> Option<u32> {
        self.layers
            .iter()
            .find(|l| l.index == index)
            .map(|l| l.ssrc)
    }
}

/// Rank of the usual RID names: q/h/f (quarter, half, full, as browsers' examples and LiveKit
/// use), 0/1/2 and low/mid/high.
pub(crate) fn rid_rank(rid: &str) -> Option<usize> {
    match rid {
        "q" | "0" | "low" => Some(0),
        "h" | "1" | "mid" => Some(1),
        "f" | "2" | "high" => Some(2),
        _ => None,
    }
}

/// Measures a layer's bitrate over ~1 s windows.
#[derive(Debug, Clone, Default)]
pub(crate) struct BitrateMeter {
    window_start: Option<Instant>,
    bytes: u64,
    /// Last full window's rate in bits per second.
    pub bps: u64,
}

impl BitrateMeter {
    /// Accounts one packet.
    #[inline]
    pub fn add(&mut self, now: Instant, bytes: usize) {
        let start = *self.window_start.get_or_insert(now);
        self.bytes += bytes as u64;
        let elapsed = now.saturating_duration_since(start);
        if elapsed >= Duration::from_secs(1) {
            self.bps = self.bytes * 8 * 1000 / elapsed.as_millis().max(1) as u64;
            self.bytes = 0;
            self.window_start = Some(now);
        }
    }
}

/// Lets at most one keyframe request per interval reach the publisher; a request inside the
/// interval is remembered and sent when it ends, so no subscriber waits forever.
#[derive(Debug, Clone)]
pub struct KeyframeThrottle {
    interval: Duration,
    last_sent: Option<Instant>,
    pending: bool,
}

impl KeyframeThrottle {
    /// A throttle letting one request through per `interval`.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            last_sent: None,
            pending: false,
        }
    }

    /// A subscriber asks for a keyframe: true if the request should be sent now.
    pub fn request(&mut self, now: Instant) -> bool {
        match self.last_sent {
            Some(t) if now.saturating_duration_since(t) < self.interval => {
                self.pending = true;
                false
            }
            _ => {
                self.last_sent = Some(now);
                self.pending = false;
                true
            }
        }
    }

    /// Periodic check: true if a remembered request is now due.
    pub fn poll(&mut self, now: Instant) -> bool {
        self.pending && self.request(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_one_per_interval_and_remembers() {
        let t0 = Instant::now();
        let mut k = KeyframeThrottle::new(Duration::from_millis(500));
        assert!(k.request(t0));
        assert!(!k.request(t0 + Duration::from_millis(10)));
        assert!(!k.request(t0 + Duration::from_millis(400)));
        assert!(!k.poll(t0 + Duration::from_millis(499)));
        assert!(
            k.poll(t0 + Duration::from_millis(500)),
            "pending request flushed"
        );
        assert!(!k.poll(t0 + Duration::from_millis(2000)), "only once");
        assert!(k.request(t0 + Duration::from_millis(2000)));
    }

    #[test]
    fn rid_ranks() {
        assert_eq!(rid_rank("q"), Some(0));
        assert_eq!(rid_rank("h"), Some(1));
        assert_eq!(rid_rank("f"), Some(2));
        assert_eq!(rid_rank("x"), None);
    }

    #[test]
    fn bitrate_meter() {
        let t0 = Instant::now();
        let mut m = BitrateMeter::default();
        for i in 0..=100u64 {
            m.add(t0 + Duration::from_millis(i * 10), 1250);
        }
        // 101 packets of 10 kbit over 1 s.
        assert!((1_000_000..=1_020_000).contains(&m.bps), "{}", m.bps);
    }
}
