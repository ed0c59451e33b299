//! A published stream: its codec, its simulcast layers and keyframe-request throttling.

use std::time::{Duration, Instant};

use bytes::Bytes;

use rtc::rtp_transceiver::RTCRtpReceiverId;
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodec, RtpCodecKind};

use crate::rtp::cache::PacketCache;
use crate::rtp::codec::Codec;

/// Identifies a published track inside the SFU (unique across rooms).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrackId(pub u64);

/// Most simulcast layers a track carries.
pub const MAX_LAYERS: usize = 3;

/// Packets of each video layer kept for repairs at most: about 1.7 s of a 1.5 Mbit/s layer.
/// Shared by every subscriber of the track, and what it holds is the publisher's payloads.
/// Packets every subscriber confirmed leave early (see [`CachedPacket::awaiting`]), so what
/// it usually holds is a feedback interval's worth plus the losses.
const CACHE_PACKETS: usize = 256;
/// How far a packet may overtake the keyframe a subscriber waits for and still be repaired. A
/// packet sent to nobody is kept only for that: networks reorder by a few places, and a
/// subscriber waiting long for a keyframe would otherwise fill the cache with packets nobody
/// will ask for.
const OVERTAKE_DEPTH: u16 = 32;
/// The longest packets stay repairable, used until every subscriber's round trip is known: a
/// receiver's jitter buffer has given up on older packets.
pub(crate) const CACHE_AGE: Duration = Duration::from_secs(1);
/// The shortest: what a nearby subscriber needs with slack for jitter and feedback intervals.
const MIN_CACHE_AGE: Duration = Duration::from_millis(300);

/// How long published packets stay repairable, given each subscriber's round trip (`None`:
/// not measured yet). A loss is NACKed about one round trip after the packet left the SFU and
/// a lost retransmission once more a round trip later, so two round trips of the farthest
/// subscriber plus 100 ms, within [`MIN_CACHE_AGE`, `CACHE_AGE`]. Packets are what a
/// participant's memory is mostly made of, so this is kept as short as repairs allow.
pub(crate) fn cache_horizon(rtts: impl IntoIterator<Item = Option<Duration>>) -> Duration {
    let mut farthest = Duration::ZERO;
    for rtt in rtts {
        match rtt {
            Some(rtt) => farthest = farthest.max(rtt),
            None => return CACHE_AGE,
        }
    }
    (farthest * 2 + Duration::from_millis(100)).clamp(MIN_CACHE_AGE, CACHE_AGE)
}

/// What a repair needs of a publisher's packet; the sequence number is the cache's key.
#[derive(Debug, Clone)]
pub(crate) struct CachedPacket {
    /// When it arrived, for ageing out.
    pub at: Instant,
    /// Subscribers it was sent to whose feedback has not yet confirmed it arrived. Only those
    /// can ask for it again, so when the last one confirms, the packet is released: packets in
    /// flight and lost ones stay, not the whole horizon's worth. (Subscribers without
    /// transport-wide-cc never confirm: what they were sent stays until it ages out. So does a
    /// packet sent to nobody yet, kept for a subscriber switching to its layer.)
    pub awaiting: u16,
    /// Confirmed by every subscriber it was sent to: its payload is let go, and the slot stays
    /// until it ages out so that a NACK for it is told apart from one for a packet never or no
    /// longer cached ([`Repairs`](crate::Repairs)).
    pub released: bool,
    pub timestamp: u32,
    pub marker: bool,
    pub payload: Bytes,
}

/// What a layer's cache knows of one of its packets.
#[derive(Debug)]
pub(crate) enum Lookup<'a> {
    /// Held for repairs.
    Cached(&'a CachedPacket),
    /// Every subscriber it went to confirmed it: nobody should ask for it.
    Released,
    /// Not (yet) arrived from the publisher, never cached (a layer nobody was getting or
    /// moving to), aged out, or overwritten.
    Missing,
}

/// One simulcast encoding (or the single encoding of a plain track).
#[derive(Debug)]
pub(crate) struct Layer {
    pub ssrc: u32,
    pub rid: Option<String>,
    /// Quality rank: 0 lowest.
    pub index: usize,
    pub bitrate: BitrateMeter,
    /// Recent packets for answering subscribers' NACKs (video only).
    pub cache: Option<PacketCache<CachedPacket>>,
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
            cache: (self.kind == RtpCodecKind::Video).then(|| PacketCache::new(CACHE_PACKETS)),
        });
    }

    /// Drops cached packets that arrived before `oldest`.
    pub fn age_caches(&mut self, oldest: Instant) {
        for cache in self.layers.iter_mut().filter_map(|l| l.cache.as_mut()) {
            cache.retain(|p| p.at >= oldest);
        }
    }

    /// Caches a packet of a layer for repairs. Of the packets sent to nobody, only the last
    /// [`OVERTAKE_DEPTH`] numbers' are kept.
    pub fn cache(&mut self, layer: usize, seq: u16, packet: CachedPacket) {
        let Some(cache) = self.cache_mut(layer) else {
            return;
        };
        if packet.awaiting == 0 {
            let old = seq.wrapping_sub(OVERTAKE_DEPTH);
            if cache
                .get(old)
                .is_some_and(|p| p.awaiting == 0 && !p.released)
            {
                cache.remove(old);
            }
        }
        cache.insert(seq, packet);
    }

    /// A subscriber's feedback confirmed it has a packet of a layer: once every subscriber it
    /// was sent to has, nobody will ask for it again and its payload is let go.
    pub fn confirm(&mut self, layer: usize, seq: u16) {
        if let Some(p) = self.cache_mut(layer).and_then(|c| c.get_mut(seq))
            && p.awaiting > 0
        {
            p.awaiting -= 1;
            if p.awaiting == 0 {
                p.released = true;
                p.payload = Bytes::new();
            }
        }
    }

    /// How many packets the track's layers hold for repairs.
    pub fn cached_packets(&self) -> usize {
        self.layers
            .iter()
            .filter_map(|l| l.cache.as_ref())
            .map(|c| c.count(|p| !p.released))
            .sum()
    }

    /// What the cache of a layer knows of a packet, for a repair.
    pub fn lookup(&self, layer: usize, seq: u16) -> Lookup<'_> {
        let packet = self
            .layers
            .iter()
            .find(|l| l.index == layer)
            .and_then(|l| l.cache.as_ref())
            .and_then(|c| c.get(seq));
        match packet {
            Some(p) if p.released => Lookup::Released,
            Some(p) => Lookup::Cached(p),
            None => Lookup::Missing,
        }
    }

    /// The packet cache of a layer (video layers have one).
    fn cache_mut(&mut self, layer: usize) -> Option<&mut PacketCache<CachedPacket>> {
        self.layers
            .iter_mut()
            .find(|l| l.index == layer)?
            .cache
            .as_mut()
    }

    /// Whether the track is simulcast: more than one layer seen, or one sent with a RID (a
    /// browser names its encodings only when it simulcasts, and it may hold the upper layers
    /// back until its own estimate allows them).
    pub fn is_simulcast(&self) -> bool {
        self.layers.len() > 1 || self.layers.iter().any(|l| l.rid.is_some())
    }

    /// (layer index, measured bits per second) of every layer; 0 for a layer that stopped.
    pub fn layer_rates(&self, now: Instant) -> Vec<(usize, u64)> {
        self.layers
            .iter()
            .map(|l| (l.index, l.bitrate.rate(now)))
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

/// A layer with no packet for this long has stopped: a browser whose uplink estimate falls
/// drops its upper simulcast layers without a word, and a subscriber left on one would freeze.
const LAYER_STALE: Duration = Duration::from_millis(1000);

/// Measures a layer's bitrate over ~1 s windows.
#[derive(Debug, Clone, Default)]
pub(crate) struct BitrateMeter {
    window_start: Option<Instant>,
    last_packet: Option<Instant>,
    bytes: u64,
    /// Last full window's rate in bits per second.
    bps: u64,
}

impl BitrateMeter {
    /// The last full window's rate in bits per second, or 0 once packets stopped coming.
    pub fn rate(&self, now: Instant) -> u64 {
        match self.last_packet {
            Some(t) if now.saturating_duration_since(t) < LAYER_STALE => self.bps,
            _ => 0,
        }
    }

    /// Accounts one packet.
    #[inline]
    pub fn add(&mut self, now: Instant, bytes: usize) {
        if self
            .last_packet
            .is_some_and(|t| now.saturating_duration_since(t) >= LAYER_STALE)
        {
            // Resumed after a pause: measure afresh rather than average over the silence.
            self.window_start = None;
            self.bytes = 0;
        }
        self.last_packet = Some(now);
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

    fn packet(awaiting: u16) -> CachedPacket {
        CachedPacket {
            at: Instant::now(),
            awaiting,
            released: false,
            timestamp: 0,
            marker: false,
            payload: Bytes::from_static(b"vp8"),
        }
    }

    #[test]
    fn a_packet_leaves_the_cache_once_every_subscriber_has_it() {
        let mut t = video_track();
        t.add_layer(1, None);
        t.cache(0, 10, packet(2));
        t.cache(0, 11, packet(1));
        // Sent to nobody yet, kept for a subscriber moving to the layer: no confirmation frees it.
        t.cache(0, 12, packet(0));
        assert_eq!(t.cached_packets(), 3);
        assert!(matches!(t.lookup(0, 13), Lookup::Missing));
        t.confirm(0, 10);
        t.confirm(0, 11);
        t.confirm(0, 12);
        assert!(matches!(t.lookup(0, 12), Lookup::Cached(_)));
        assert!(
            matches!(t.lookup(0, 10), Lookup::Cached(p) if p.payload[..] == b"vp8"[..]),
            "one of two subscribers still may ask"
        );
        assert!(matches!(t.lookup(0, 11), Lookup::Released));
        t.confirm(0, 10);
        t.confirm(0, 10);
        t.confirm(1, 10);
        assert_eq!(t.cached_packets(), 1);
        assert!(matches!(t.lookup(0, 10), Lookup::Released));
        // Released slots age out like the rest.
        t.age_caches(Instant::now() + Duration::from_secs(1));
        assert!(matches!(t.lookup(0, 10), Lookup::Missing));
        assert!(matches!(t.lookup(0, 12), Lookup::Missing));
        assert_eq!(t.cached_packets(), 0);
    }

    #[test]
    fn only_the_last_few_packets_sent_to_nobody_are_kept() {
        let mut t = video_track();
        t.add_layer(1, None);
        t.cache(0, 99, packet(1));
        for seq in 100..200 {
            t.cache(0, seq, packet(0));
        }
        assert_eq!(t.cached_packets(), 1 + OVERTAKE_DEPTH as usize);
        assert!(matches!(t.lookup(0, 99), Lookup::Cached(_)), "sent: kept");
        assert!(matches!(t.lookup(0, 167), Lookup::Missing));
        assert!(matches!(t.lookup(0, 168), Lookup::Cached(_)));
    }

    #[test]
    fn cache_horizon_follows_the_farthest_subscriber() {
        let ms = Duration::from_millis;
        assert_eq!(
            cache_horizon([]),
            MIN_CACHE_AGE,
            "no subscriber, nothing to repair"
        );
        assert_eq!(cache_horizon([Some(ms(20)), Some(ms(60))]), MIN_CACHE_AGE);
        assert_eq!(cache_horizon([Some(ms(20)), Some(ms(250))]), ms(600));
        assert_eq!(cache_horizon([Some(ms(900))]), CACHE_AGE);
        assert_eq!(
            cache_horizon([Some(ms(20)), None]),
            CACHE_AGE,
            "a subscriber not measured yet may be far"
        );
    }

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

    fn video_track() -> Track {
        Track {
            id: TrackId(1),
            rtc_track_id: "cam".into(),
            receiver_id: Default::default(),
            kind: RtpCodecKind::Video,
            codec: crate::rtp::codec::Codec::from_mime("video/VP8"),
            rtp_codec: Default::default(),
            layers: Vec::new(),
            keyframes: KeyframeThrottle::new(Duration::from_millis(500)),
            pending_keyframe_layer: None,
            audio_level_ext: None,
            needed: [true; MAX_LAYERS],
        }
    }

    #[test]
    fn a_track_is_simulcast_from_its_first_rid_or_its_second_layer() {
        let mut plain = video_track();
        plain.add_layer(1, None);
        assert!(!plain.is_simulcast(), "one layer, no RID");
        plain.add_layer(2, None);
        assert!(plain.is_simulcast(), "a second layer");
        // A browser holding its upper layers back still names the one it sends.
        let mut held_back = video_track();
        held_back.add_layer(1, Some("q".into()));
        assert!(held_back.is_simulcast());
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
        let end = t0 + Duration::from_millis(1000);
        assert!(
            (1_000_000..=1_020_000).contains(&m.rate(end)),
            "{}",
            m.rate(end)
        );
        // The layer stops: after a second of silence it counts as gone...
        assert_eq!(m.rate(end + Duration::from_millis(999)), m.rate(end));
        assert_eq!(m.rate(end + Duration::from_millis(1000)), 0);
        // ...and comes back measured afresh, not averaged over the pause.
        let back = end + Duration::from_secs(5);
        for i in 0..=50u64 {
            m.add(back + Duration::from_millis(i * 20), 1250);
        }
        let r = m.rate(back + Duration::from_millis(1000));
        assert!((500_000..=520_000).contains(&r), "{r}");
    }
}
