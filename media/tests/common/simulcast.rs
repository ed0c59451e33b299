//! A publisher of three simulcast layers (RIDs q/h/f), written to directly by tests.

use std::sync::Arc;
use std::time::Duration;

use rtc::media_stream::MediaStreamTrack;
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;

use super::{Client, VP8_PT, extmap_id, mid_of};

/// Layer names, low to high.
pub const RIDS: [&str; 3] = ["q", "h", "f"];
/// Layer SSRCs.
pub const SSRCS: [u32; 3] = [0xa0, 0xa1, 0xa2];
/// Payload sizes per layer: at 100 packets/s, about 16, 64 and 200 kbit/s, all within the
/// initial bandwidth estimate so the requested size decides.
pub const SIZES: [usize; 3] = [20, 80, 250];
/// Sizes for the bandwidth test: about 40, 240 and 440 kbit/s at 50 packets/s.
pub const BWE_SIZES: [usize; 3] = [100, 600, 1100];

/// One VP8 track in three simulcast layers (RIDS, SSRCS), as a browser publishes its camera.
pub fn simulcast_track() -> Arc<TrackLocalStaticRTP> {
    let codings = (0..3)
        .map(|i| RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                rid: RIDS[i].to_owned(),
                ssrc: Some(SSRCS[i]),
                ..Default::default()
            },
            codec: RTCRtpCodec {
                mime_type: "video/VP8".to_owned(),
                clock_rate: 90000,
                ..Default::default()
            },
            ..Default::default()
        })
        .collect();
    Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
        "pub-stream".to_owned(),
        "cam".to_owned(),
        "cam".to_owned(),
        RtpCodecKind::Video,
        codings,
    )))
}

/// A client publishing one VP8 track in three simulcast layers.
pub struct SimulcastPublisher {
    pub client: Client,
    track: Arc<TrackLocalStaticRTP>,
    mid_ext: u8,
    rid_ext: u8,
    mid: String,
    frame: u32,
    /// Payload size per layer.
    pub sizes: [usize; 3],
    /// Time between frames.
    pub interval: Duration,
    /// The SFU's answer.
    pub answer: String,
    /// Layers being sent (a browser drops upper layers when its uplink estimate falls).
    pub active: [bool; 3],
    /// A layer whose next keyframe is overtaken by the packet after it, as a network that
    /// reorders would have it.
    pub overtake_keyframe: Option<usize>,
}

impl SimulcastPublisher {
    /// Connects a plain client as a simulcast publisher.
    pub async fn connect(handle: &mescon_media::ParticipantHandle) -> Self {
        Self::connect_with(handle, Client::new(false).await).await
    }

    /// Connects `client` as a simulcast publisher.
    pub async fn connect_with(handle: &mescon_media::ParticipantHandle, client: Client) -> Self {
        Self::negotiate(handle, client, |answer| answer).await
    }

    /// Connects a plain client as a simulcast publisher whose media goes through `proxy`.
    pub async fn connect_through(
        handle: &mescon_media::ParticipantHandle,
        proxy: &super::proxy::Proxy,
        sfu: std::net::SocketAddr,
    ) -> Self {
        let client = Client::new(false).await;
        Self::negotiate(handle, client, |answer| proxy.rewrite(&answer, sfu)).await
    }

    async fn negotiate(
        handle: &mescon_media::ParticipantHandle,
        mut client: Client,
        rewrite: impl FnOnce(String) -> String,
    ) -> Self {
        let track = simulcast_track();
        client
            .pc
            .add_track(track.clone() as Arc<dyn TrackLocal>)
            .await
            .expect("add simulcast track");
        let offer = client.offer().await;
        assert!(
            offer.contains("a=simulcast:send"),
            "offer is simulcast:\n{offer}"
        );
        let answer = rewrite(handle.publish_offer(offer.clone()).await.expect("answer"));
        client.apply_answer(answer.clone()).await;
        client.wait_connected(Duration::from_secs(10)).await;
        Self {
            client,
            track,
            mid_ext: extmap_id(&answer, "urn:ietf:params:rtp-hdrext:sdes:mid").expect("mid ext"),
            rid_ext: extmap_id(&answer, "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id")
                .expect("rid ext"),
            mid: mid_of(&offer, "video").expect("video mid"),
            frame: 0,
            sizes: SIZES,
            interval: Duration::from_millis(10),
            answer,
            active: [true; 3],
            overtake_keyframe: None,
        }
    }

    /// One frame on every layer; keyframes every 25 frames, staggered per layer. Payloads start
    /// with a VP8 descriptor byte, then 0 for a keyframe, the layer, and the frame number's low byte.
    pub async fn send_frames(&mut self, n: u32) {
        let mut tick = tokio::time::interval(self.interval);
        // A keyframe held back (its layer and packet), to go right after its layer's next packet.
        let mut held: Option<(usize, rtp::Packet)> = None;
        for _ in 0..n {
            tick.tick().await;
            let f = self.frame;
            self.frame += 1;
            for layer in (0..3).filter(|l| self.active[*l]) {
                let keyframe = (f + layer as u32 * 7).is_multiple_of(25);
                let mut payload = vec![0u8; self.sizes[layer]];
                payload[0] = 0x10;
                payload[1] = if keyframe { 0x00 } else { 0x01 };
                payload[2] = layer as u8;
                payload[3] = f as u8;
                let mut header = rtp::header::Header {
                    version: 2,
                    marker: true,
                    payload_type: VP8_PT,
                    // Unrelated numbering per layer, as real encoders have.
                    sequence_number: (f as u16)
                        .wrapping_add((layer as u16).wrapping_mul(20000))
                        .wrapping_add(65000),
                    timestamp: f.wrapping_mul(900).wrapping_add(layer as u32 * 1_000_000),
                    ssrc: SSRCS[layer],
                    ..Default::default()
                };
                header
                    .set_extension(self.mid_ext, self.mid.clone().into_bytes().into())
                    .expect("mid");
                header
                    .set_extension(self.rid_ext, RIDS[layer].as_bytes().to_vec().into())
                    .expect("rid");
                let packet = rtp::Packet {
                    header,
                    payload: payload.into(),
                };
                if keyframe && self.overtake_keyframe == Some(layer) {
                    self.overtake_keyframe = None;
                    held = Some((layer, packet));
                    continue;
                }
                let _ = self.track.write_rtp(packet).await;
                if let Some((_, keyframe)) = held.take_if(|(l, _)| *l == layer) {
                    let _ = self.track.write_rtp(keyframe).await;
                }
            }
        }
    }
}
