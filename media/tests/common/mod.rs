//! Real WebRTC client peers (the async `webrtc` crate) for driving the SFU over loopback.
#![allow(dead_code, unused_imports)]

mod proxy;
mod simulcast;
mod tap;
pub use proxy::{Proxy, Verdict};
pub use simulcast::*;
pub use tap::ReadTap;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mescon_media::rtp::codec::Codec;
use mescon_media::{Event, ParticipantHandle, Sfu, SfuConfig};
use rtc::media_stream::MediaStreamTrack;
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use tokio::sync::mpsc;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCPeerConnectionState, RTCSessionDescription, Registry, register_default_interceptors,
};
use webrtc::runtime::default_runtime;

pub const VP8_PT: u8 = 96;
pub const OPUS_PT: u8 = 111;

/// One RTP packet as a subscriber saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub pt: u8,
    pub seq: u16,
    pub ts: u32,
    pub ssrc: u32,
    pub keyframe: bool,
    pub len: usize,
    /// First payload bytes (tests put markers there).
    pub head: [u8; 4],
    /// Send time stamped by [`Publisher::send`] (ns since [`epoch`]), if present.
    pub sent_ns: Option<u64>,
    /// Arrival time, ns since [`epoch`].
    pub recv_ns: u64,
}

/// A process-wide time origin for latency stamps.
pub fn epoch() -> std::time::Instant {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(std::time::Instant::now)
}

/// ns since [`epoch`].
pub fn now_ns() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

/// Where [`Publisher::send`] stamps its send time in each payload.
const STAMP: std::ops::Range<usize> = 4..12;

/// Packets received per remote track id.
pub type Inbox = Arc<Mutex<HashMap<String, Vec<Seen>>>>;

struct Handler {
    connected: mpsc::UnboundedSender<RTCPeerConnectionState>,
    inbox: Inbox,
    tracks: Arc<Mutex<Vec<Arc<dyn TrackRemote>>>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.connected.send(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        if let Ok(mut t) = self.tracks.lock() {
            t.push(track.clone());
        }
        let inbox = self.inbox.clone();
        tokio::spawn(async move {
            let id = track.track_id().await;
            let kind = track.kind().await;
            while let Some(ev) = track.poll().await {
                match ev {
                    TrackRemoteEvent::OnRtpPacket(p) => {
                        let keyframe =
                            kind == RtpCodecKind::Video && Codec::Vp8.is_keyframe(&p.payload);
                        if let Ok(mut m) = inbox.lock() {
                            m.entry(id.clone()).or_default().push(Seen {
                                pt: p.header.payload_type,
                                seq: p.header.sequence_number,
                                ts: p.header.timestamp,
                                ssrc: p.header.ssrc,
                                keyframe,
                                len: p.payload.len(),
                                sent_ns: p
                                    .payload
                                    .get(STAMP)
                                    .and_then(|b| b.try_into().ok())
                                    .map(u64::from_be_bytes),
                                recv_ns: now_ns(),
                                head: {
                                    let mut h = [0u8; 4];
                                    let n = p.payload.len().min(4);
                                    h[..n].copy_from_slice(&p.payload[..n]);
                                    h
                                },
                            });
                        }
                    }
                    TrackRemoteEvent::OnEnded => break,
                    _ => {}
                }
            }
        });
    }
}

/// A client peer connection with a record of what it receives.
pub struct Client {
    pub pc: Arc<dyn PeerConnection>,
    /// UDP-less client: it dials the SFU's passive TCP candidates itself.
    pub tcp_only: bool,
    pub states: mpsc::UnboundedReceiver<RTCPeerConnectionState>,
    pub inbox: Inbox,
    /// Remote tracks, as they opened.
    pub tracks: Arc<Mutex<Vec<Arc<dyn TrackRemote>>>>,
}

impl Client {
    /// A client peer bound to loopback UDP (or, with `tcp_only`, active ICE-TCP only).
    pub async fn new(tcp_only: bool) -> Client {
        Self::with_interceptors(tcp_only, |registry| registry).await
    }

    /// A loopback UDP client that answers as the DTLS client, as browsers do. (Left to itself,
    /// `webrtc` answers an ICE-lite offer as the DTLS server, which makes the SFU the client.)
    pub async fn answering_as_dtls_client() -> Client {
        let settings = webrtc::peer_connection::SettingEngineBuilder::new()
            .with_answering_dtls_role(rtc::peer_connection::transport::RTCDtlsRole::Client)
            .build();
        Self::build(false, |registry| registry, Some(settings)).await
    }

    /// Like [`Client::new`], with interceptors of the test's own added to the default chain.
    pub async fn with_interceptors(
        tcp_only: bool,
        extra: impl FnOnce(Registry) -> Registry,
    ) -> Client {
        Self::build(tcp_only, extra, None).await
    }

    async fn build(
        tcp_only: bool,
        extra: impl FnOnce(Registry) -> Registry,
        settings: Option<webrtc::peer_connection::SettingEngine>,
    ) -> Client {
        let mut me = MediaEngine::default();
        me.register_default_codecs().expect("codecs");
        me.register_header_extension(
            rtc::rtp_transceiver::rtp_sender::RTCRtpHeaderExtensionCapability {
                uri: rtc::sdp::extmap::AUDIO_LEVEL_URI.to_owned(),
            },
            RtpCodecKind::Audio,
            None,
        )
        .expect("audio level extension");
        let registry =
            register_default_interceptors(extra(Registry::new()), &mut me).expect("interceptors");
        let (tx, states) = mpsc::unbounded_channel();
        let inbox: Inbox = Default::default();
        let tracks: Arc<Mutex<Vec<Arc<dyn TrackRemote>>>> = Default::default();
        let builder = PeerConnectionBuilder::new()
            .with_media_engine(me)
            .with_interceptor_registry(registry)
            .with_handler(Arc::new(Handler {
                connected: tx,
                inbox: inbox.clone(),
                tracks: tracks.clone(),
            }))
            .with_runtime(default_runtime().expect("runtime"));
        let builder = match settings {
            Some(settings) => builder.with_setting_engine(settings),
            None => builder,
        };
        let builder = if tcp_only {
            builder
                .with_udp_addrs(Vec::<String>::new())
                .with_tcp_addrs(vec!["127.0.0.1:0".to_owned()])
        } else {
            builder.with_udp_addrs(vec!["127.0.0.1:0".to_owned()])
        };
        let pc = builder.build().await.expect("client peer");
        Client {
            pc: Arc::new(pc),
            tcp_only,
            states,
            inbox,
            tracks,
        }
    }

    /// Waits until the connection reports connected.
    pub async fn wait_connected(&mut self, within: Duration) {
        let fut = async {
            while let Some(s) = self.states.recv().await {
                if s == RTCPeerConnectionState::Connected {
                    return;
                }
                assert_ne!(
                    s,
                    RTCPeerConnectionState::Failed,
                    "client connection failed"
                );
            }
        };
        tokio::time::timeout(within, fut)
            .await
            .expect("client connected in time");
    }

    /// Answers an offer and returns the answer SDP.
    pub async fn answer(&self, offer: String) -> String {
        let offer_sdp = offer.clone();
        let offer = RTCSessionDescription::offer(offer).expect("offer sdp");
        self.pc
            .set_remote_description(offer)
            .await
            .expect("apply offer");
        let answer = self.pc.create_answer(None).await.expect("answer");
        self.pc
            .set_local_description(answer)
            .await
            .expect("set answer");
        if self.tcp_only {
            self.dial_tcp_candidates(&offer_sdp).await;
        }
        self.pc.local_description().await.expect("local answer").sdp
    }

    /// The webrtc crate dials active ICE-TCP only for trickled remote candidates, not for those
    /// inside the SDP, so hand it the SFU's passive TCP candidates explicitly.
    pub async fn dial_tcp_candidates(&self, remote_sdp: &str) {
        for line in remote_sdp.lines() {
            if let Some(c) = line.strip_prefix("a=")
                && c.starts_with("candidate:")
                && c.contains("tcptype passive")
            {
                self.pc
                    .add_ice_candidate(webrtc::peer_connection::RTCIceCandidateInit {
                        candidate: c.to_owned(),
                        sdp_mid: Some("0".to_owned()),
                        sdp_mline_index: Some(0),
                        ..Default::default()
                    })
                    .await
                    .expect("add remote tcp candidate");
            }
        }
    }

    /// Like [`Client::answer`], but `None` once the client is closed.
    pub async fn try_answer(&self, offer: String) -> Option<String> {
        let desc = RTCSessionDescription::offer(offer.clone()).ok()?;
        self.pc.set_remote_description(desc).await.ok()?;
        let answer = self.pc.create_answer(None).await.ok()?;
        self.pc.set_local_description(answer).await.ok()?;
        if self.tcp_only {
            self.dial_tcp_candidates(&offer).await;
        }
        Some(self.pc.local_description().await?.sdp)
    }

    /// Creates an offer and returns its SDP.
    pub async fn offer(&self) -> String {
        let offer = self.pc.create_offer(None).await.expect("offer");
        self.pc
            .set_local_description(offer)
            .await
            .expect("set offer");
        self.pc.local_description().await.expect("local offer").sdp
    }

    /// Applies the SFU's answer.
    pub async fn apply_answer(&self, sdp: String) {
        let answer = RTCSessionDescription::answer(sdp.clone()).expect("answer sdp");
        self.pc
            .set_remote_description(answer)
            .await
            .expect("apply answer");
        if self.tcp_only {
            self.dial_tcp_candidates(&sdp).await;
        }
    }

    /// Snapshot of what was received.
    pub fn seen(&self) -> HashMap<String, Vec<Seen>> {
        self.inbox.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

/// The `a=extmap` id of `uri` in an SDP.
pub fn extmap_id(sdp: &str, uri: &str) -> Option<u8> {
    sdp.lines().find_map(|l| {
        let rest = l.strip_prefix("a=extmap:")?;
        let (id, u) = rest.split_once(' ')?;
        (u.trim() == uri).then(|| id.split('/').next()?.parse().ok())?
    })
}

/// The payload type an SDP pairs as RTX (`apt=`) with payload type `apt`.
pub fn rtx_pt_of(sdp: &str, apt: u8) -> Option<u8> {
    sdp.lines().find_map(|l| {
        let (pt, params) = l.strip_prefix("a=fmtp:")?.split_once(' ')?;
        (params.trim() == format!("apt={apt}")).then(|| pt.parse().ok())?
    })
}

/// The `a=mid` of the first m-section of `kind` ("video"/"audio") in an SDP.
pub fn mid_of(sdp: &str, kind: &str) -> Option<String> {
    let section = sdp.split("m=").find(|s| s.starts_with(kind))?;
    section
        .lines()
        .find_map(|l| l.strip_prefix("a=mid:"))
        .map(|m| m.trim().to_owned())
}

/// A local track with a fixed SSRC, written to by the test.
pub fn local_track(kind: RtpCodecKind, id: &str, ssrc: u32) -> Arc<TrackLocalStaticRTP> {
    let codec = match kind {
        RtpCodecKind::Audio => RTCRtpCodec {
            mime_type: "audio/opus".to_owned(),
            clock_rate: 48000,
            channels: 2,
            sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
            rtcp_feedback: vec![],
        },
        _ => RTCRtpCodec {
            mime_type: "video/VP8".to_owned(),
            clock_rate: 90000,
            channels: 0,
            sdp_fmtp_line: String::new(),
            rtcp_feedback: vec![],
        },
    };
    Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
        "pub-stream".to_owned(),
        id.to_owned(),
        id.to_owned(),
        kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec,
            ..Default::default()
        }],
    )))
}

/// A publisher: a client with an audio and a video track.
pub struct Publisher {
    pub client: Client,
    pub audio: Arc<TrackLocalStaticRTP>,
    pub video: Arc<TrackLocalStaticRTP>,
    /// Frames sent so far, so successive `send` calls continue the streams.
    pub sent: std::sync::atomic::AtomicU32,
    /// The SFU's answer.
    pub answer: String,
    /// (extension id, -dBov) to put on audio packets, if any.
    pub audio_level: Option<(u8, u8)>,
}

pub const AUDIO_SSRC: u32 = 0x1111;
pub const VIDEO_SSRC: u32 = 0x2222;

impl Publisher {
    /// Joins, offers an audio and a video track, and waits until connected.
    pub async fn connect(handle: &ParticipantHandle, tcp_only: bool) -> Publisher {
        Publisher::negotiate(tcp_only, |offer| async move {
            handle
                .publish_offer(offer)
                .await
                .expect("sfu answers publish offer")
        })
        .await
    }

    /// Offers an audio and a video track, gets the answer from `exchange` (straight from the SFU,
    /// or through the application's signalling), and waits until connected.
    pub async fn negotiate<F, Fut>(tcp_only: bool, exchange: F) -> Publisher
    where
        F: FnOnce(String) -> Fut,
        Fut: std::future::Future<Output = String>,
    {
        Publisher::negotiate_on(Client::new(tcp_only).await, exchange).await
    }

    /// Like [`Publisher::negotiate`], on a client the test built (with interceptors of its own).
    pub async fn negotiate_on<F, Fut>(mut client: Client, exchange: F) -> Publisher
    where
        F: FnOnce(String) -> Fut,
        Fut: std::future::Future<Output = String>,
    {
        let audio = local_track(RtpCodecKind::Audio, "audio", AUDIO_SSRC);
        let video = local_track(RtpCodecKind::Video, "video", VIDEO_SSRC);
        client
            .pc
            .add_track(audio.clone() as Arc<dyn TrackLocal>)
            .await
            .expect("add audio");
        client
            .pc
            .add_track(video.clone() as Arc<dyn TrackLocal>)
            .await
            .expect("add video");
        let offer = client.offer().await;
        let answer = exchange(offer).await;
        client.apply_answer(answer.clone()).await;
        client.wait_connected(Duration::from_secs(10)).await;
        Publisher {
            client,
            audio,
            video,
            sent: Default::default(),
            answer,
            audio_level: None,
        }
    }

    /// Sends `frames` video frames (one packet each, a keyframe every `gop`) and matching audio,
    /// `interval` apart.
    pub async fn send(&self, frames: u32, gop: u32, interval: Duration) {
        self.send_sized(frames, gop, interval, 200).await;
    }

    /// Like [`Publisher::send`] with `video_len`-byte video packets.
    pub async fn send_sized(&self, frames: u32, gop: u32, interval: Duration, video_len: usize) {
        let mut tick = tokio::time::interval(interval);
        let first = self
            .sent
            .fetch_add(frames, std::sync::atomic::Ordering::Relaxed);
        for i in first..first + frames {
            tick.tick().await;
            let keyframe = i % gop == 0;
            let mut payload = vec![0u8; video_len.max(12)];
            payload[0] = 0x10; // VP8 descriptor: start of partition 0
            payload[1] = if keyframe { 0x00 } else { 0x01 };
            payload[STAMP].copy_from_slice(&now_ns().to_be_bytes());
            let video = rtp::Packet {
                header: rtp::header::Header {
                    version: 2,
                    marker: true,
                    payload_type: VP8_PT,
                    sequence_number: (i as u16).wrapping_add(1000),
                    timestamp: i.wrapping_mul(3000),
                    ssrc: VIDEO_SSRC,
                    ..Default::default()
                },
                payload: payload.into(),
            };
            let _ = self.video.write_rtp(video).await;
            let mut audio = rtp::Packet {
                header: rtp::header::Header {
                    version: 2,
                    payload_type: OPUS_PT,
                    sequence_number: (i as u16).wrapping_add(50000),
                    timestamp: i.wrapping_mul(960),
                    ssrc: AUDIO_SSRC,
                    ..Default::default()
                },
                payload: {
                    let mut a = vec![0xfc; 60];
                    a[STAMP].copy_from_slice(&now_ns().to_be_bytes());
                    a.into()
                },
            };
            if let Some((id, level)) = self.audio_level {
                let _ = audio.header.set_extension(id, vec![level].into());
            }
            let _ = self.audio.write_rtp(audio).await;
        }
    }
}

/// Answers every subscribe offer for a participant, in the background.
pub fn auto_answer(
    handle: ParticipantHandle,
    client: Arc<Client>,
    mut events: mpsc::UnboundedReceiver<Event>,
    log: mpsc::UnboundedSender<Event>,
) {
    tokio::spawn(async move {
        while let Some(ev) = events.recv().await {
            if let Event::SubscribeOffer { sdp } = &ev {
                // The test may close the client or leave at any time; then answering stops.
                let Some(answer) = client.try_answer(sdp.clone()).await else {
                    break;
                };
                if handle.subscribe_answer(answer).await.is_err() {
                    break;
                }
            }
            let _ = log.send(ev);
        }
    });
}

/// A subscriber in `room` whose subscribe offers a plain client answers in the background.
pub async fn join_subscriber(sfu: &Sfu, room: &str, id: &str) -> (ParticipantHandle, Arc<Client>) {
    let (handle, events) = sfu.join(room, id).await.expect("join");
    let client = Arc::new(Client::new(false).await);
    let (log, _) = mpsc::unbounded_channel();
    auto_answer(handle.clone(), client.clone(), events, log);
    (handle, client)
}

/// The SFU address a client connection really talks to: the remote end of its selected ICE
/// candidate pair (through its first receiver's, else its first sender's, transport).
pub async fn selected_remote(pc: &Arc<dyn PeerConnection>) -> Option<(String, u16)> {
    let mut transport = None;
    if let Some(r) = pc.get_receivers().await.first() {
        transport = r.transport().await.ok().flatten();
    }
    if transport.is_none()
        && let Some(s) = pc.get_senders().await.first()
    {
        transport = s.transport().await.ok().flatten();
    }
    let pair = transport?
        .ice_transport()
        .get_selected_candidate_pair()
        .await
        .ok()
        .flatten()?;
    Some((pair.remote().address.clone(), pair.remote().port))
}

/// An SFU on loopback with an ephemeral UDP (and optionally ICE-TCP) port.
pub async fn start_sfu(ice_tcp: bool) -> Sfu {
    let mut cfg = SfuConfig::new("127.0.0.1:0".parse().expect("addr"));
    if ice_tcp {
        cfg.ice_tcp = Some("127.0.0.1:0".parse().expect("addr"));
    }
    cfg.workers = 2;
    Sfu::start(cfg).await.expect("sfu starts")
}

/// Asserts a run of packets has consecutive sequence numbers.
pub fn assert_continuous(label: &str, seen: &[Seen]) {
    for w in seen.windows(2) {
        assert_eq!(
            w[1].seq,
            w[0].seq.wrapping_add(1),
            "{label}: sequence gap between {} and {}",
            w[0].seq,
            w[1].seq
        );
    }
}

/// Answers subscribe offers with the SFU's candidate pointed at a proxy.
pub fn answer_via_proxy(
    handle: ParticipantHandle,
    client: Arc<Client>,
    proxy: Arc<Proxy>,
    sfu: std::net::SocketAddr,
    mut events: mpsc::UnboundedReceiver<Event>,
) {
    tokio::spawn(async move {
        while let Some(ev) = events.recv().await {
            if let Event::SubscribeOffer { sdp } = ev {
                let Some(answer) = client.try_answer(proxy.rewrite(&sdp, sfu)).await else {
                    break;
                };
                if handle.subscribe_answer(answer).await.is_err() {
                    break;
                }
            }
        }
    });
}
