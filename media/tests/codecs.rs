//! H.264 and VP9 are negotiated when offered and forwarded with the subscriber's payload type.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use tokio::sync::mpsc;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;

/// The payload type an SDP maps to `mime` with exactly `fmtp`.
fn payload_type_of(sdp: &str, mime: &str, fmtp: &str) -> Option<u8> {
    let codec = mime.rsplit('/').next()?;
    sdp.lines()
        .filter_map(|l| l.strip_prefix("a=rtpmap:"))
        .filter(|r| r.contains(&format!(" {codec}/")))
        .filter_map(|r| r.split(' ').next()?.parse::<u8>().ok())
        .find(|pt| sdp.contains(&format!("a=fmtp:{pt} {fmtp}\r\n")))
}

async fn forwards(
    mime: &str,
    fmtp: &str,
    keyframe: &[u8],
    delta: &[u8],
    is_key: fn(&[u8]) -> bool,
) {
    let sfu = start_sfu(false).await;
    let (sh, sev) = sfu.join("room", "sub").await.expect("join");
    let sub = Arc::new(Client::new(false).await);
    let (log_tx, _log) = mpsc::unbounded_channel();
    auto_answer(sh, sub.clone(), sev, log_tx);

    let (ph, _pev) = sfu.join("room", "pub").await.expect("join");
    let mut client = Client::new(false).await;
    let track = Arc::new(TrackLocalStaticRTP::new(
        rtc::media_stream::MediaStreamTrack::new(
            "s".to_owned(),
            "v".to_owned(),
            "v".to_owned(),
            RtpCodecKind::Video,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(77),
                    ..Default::default()
                },
                codec: RTCRtpCodec {
                    mime_type: mime.to_owned(),
                    clock_rate: 90000,
                    sdp_fmtp_line: fmtp.to_owned(),
                    ..Default::default()
                },
                ..Default::default()
            }],
        ),
    ));
    client
        .pc
        .add_track(track.clone() as Arc<dyn TrackLocal>)
        .await
        .expect("track");
    let offer = client.offer().await;
    let pub_pt = payload_type_of(&offer, mime, fmtp).expect("publisher offers the codec");
    let answer = ph.publish_offer(offer).await.expect("answer");
    assert_eq!(
        payload_type_of(&answer, mime, fmtp),
        Some(pub_pt),
        "SFU accepts {mime}"
    );
    client.apply_answer(answer).await;
    client.wait_connected(Duration::from_secs(10)).await;

    let mut tick = tokio::time::interval(Duration::from_millis(10));
    for i in 0..150u32 {
        tick.tick().await;
        let payload = if i % 30 == 0 { keyframe } else { delta };
        let _ = track
            .write_rtp(rtp::Packet {
                header: rtp::header::Header {
                    version: 2,
                    marker: true,
                    payload_type: pub_pt,
                    sequence_number: i as u16,
                    timestamp: i * 3000,
                    ssrc: 77,
                    ..Default::default()
                },
                payload: payload.to_vec().into(),
            })
            .await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let offer_to_sub = sub
        .pc
        .remote_description()
        .await
        .expect("subscribe offer")
        .sdp;
    let sub_pt = payload_type_of(&offer_to_sub, mime, fmtp).expect("subscriber offered the codec");
    let seen = sub.seen();
    let got = seen.get("pub:v").expect("video forwarded");
    assert!(got.len() >= 60, "{mime}: {} packets", got.len());
    assert!(
        got.iter().all(|p| p.pt == sub_pt),
        "{mime}: payload type {sub_pt} of the same fmtp"
    );
    assert!(is_key(&got[0].head), "{mime}: starts on a keyframe");
    assert_continuous(mime, got);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h264_is_negotiated_and_forwarded() {
    forwards(
        "video/H264",
        "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
        &[0x65, 0x88, 0x84, 0x00],
        &[0x41, 0x9a, 0x00, 0x00],
        |h| h[0] & 0x1f == 5,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vp9_is_negotiated_and_forwarded() {
    forwards(
        "video/VP9",
        "profile-id=0",
        &[0x08, 0x00, 0x00, 0x00],
        &[0x48, 0x00, 0x00, 0x00],
        |h| h[0] & 0x48 == 0x08,
    )
    .await;
}
