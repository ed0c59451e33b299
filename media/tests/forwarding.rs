//! One publisher, three subscribers, real DTLS/SRTP over loopback through one UDP port.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use mescon_media::{Event, MediaIn, Pc};
use tokio::sync::mpsc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_publisher_three_subscribers_get_audio_and_video() {
    let sfu = start_sfu(false).await;
    let (log_tx, mut log_rx) = mpsc::unbounded_channel();
    let mut subs = Vec::new();
    for i in 0..3 {
        let (h, ev) = sfu.join("room", &format!("sub{i}")).await.expect("join");
        let c = Arc::new(Client::new(false).await);
        auto_answer(h.clone(), c.clone(), ev, log_tx.clone());
        subs.push((h, c));
    }
    let (ph, _pev) = sfu.join("room", "pub").await.expect("join");
    let publisher = Publisher::connect(&ph, false).await;

    publisher.send(150, 30, Duration::from_millis(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut connected = 0;
    while let Ok(ev) = log_rx.try_recv() {
        if ev == (Event::Connected { pc: Pc::Subscribe }) {
            connected += 1;
        }
    }
    assert_eq!(connected, 3, "every subscriber connected");

    for (h, c) in &subs {
        let seen = c.seen();
        let video = seen
            .get("pub:video")
            .unwrap_or_else(|| panic!("{} got video", h.participant()));
        let audio = seen
            .get("pub:audio")
            .unwrap_or_else(|| panic!("{} got audio", h.participant()));
        assert!(
            video.len() >= 60,
            "{}: {} video packets",
            h.participant(),
            video.len()
        );
        assert!(
            audio.len() >= 60,
            "{}: {} audio packets",
            h.participant(),
            audio.len()
        );
        assert!(
            video[0].keyframe,
            "{}: first video packet is a keyframe",
            h.participant()
        );
        assert!(video.iter().all(|p| p.pt == VP8_PT), "VP8 payload type");
        assert!(audio.iter().all(|p| p.pt == OPUS_PT), "Opus payload type");
        assert_ne!(video[0].ssrc, VIDEO_SSRC, "SSRC rewritten");
        assert_continuous("video", video);
        assert_continuous("audio", audio);
    }

    // Four client connections (3 subscribe + 1 publish), all through the one UDP port.
    let stats = sfu.stats().await;
    assert_eq!(stats.connections, 4);
    assert!(stats.address_routes >= 4, "{stats:?}");
    // Each stream's first packet tells the connection a track exists; the SFU's own receiver
    // takes every later one.
    assert_eq!(
        stats.media_in,
        MediaIn {
            uplink: 2 * 150 - 2,
            connection: 2,
            refused: 0,
        }
    );
    let sfu_port = sfu.udp_addr().port();
    for pc in subs
        .iter()
        .map(|(_, c)| &c.pc)
        .chain([&publisher.client.pc])
    {
        let remote = selected_remote(pc).await;
        assert_eq!(
            remote.as_ref().map(|r| r.1),
            Some(sfu_port),
            "selected pair {remote:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_joiner_receives_tracks_that_were_already_flowing() {
    let sfu = start_sfu(false).await;
    let (ph, _pev) = sfu.join("room", "pub").await.expect("join");
    let publisher = Publisher::connect(&ph, false).await;
    publisher.send(60, 30, Duration::from_millis(10)).await;

    // Joins only now, when the publisher's tracks are open and flowing.
    let (sh, sev) = sfu.join("room", "late").await.expect("join");
    let sub = Arc::new(Client::new(false).await);
    let (log_tx, _log) = mpsc::unbounded_channel();
    auto_answer(sh, sub.clone(), sev, log_tx);
    tokio::time::sleep(Duration::from_millis(500)).await;
    publisher.send(150, 30, Duration::from_millis(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let seen = sub.seen();
    let video = seen
        .get("pub:video")
        .expect("the late joiner gets the video");
    let audio = seen
        .get("pub:audio")
        .expect("the late joiner gets the audio");
    assert!(
        video.len() >= 60 && audio.len() >= 60,
        "{} video, {} audio",
        video.len(),
        audio.len()
    );
    assert!(video[0].keyframe, "video starts at a keyframe");
    assert_continuous("video", video);
}

/// A publisher that stops sending a track (removes it and offers again) has it taken away from
/// subscribers with a new offer, while its other track flows on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_track_is_renegotiated_away_and_the_rest_flows_on() {
    let sfu = start_sfu(false).await;
    let (sh, sev) = sfu.join("room", "sub").await.expect("join");
    let sub = Arc::new(Client::new(false).await);
    let (log_tx, mut log_rx) = mpsc::unbounded_channel();
    auto_answer(sh, sub.clone(), sev, log_tx);
    let (ph, _pev) = sfu.join("room", "pub").await.expect("join");
    let publisher = Publisher::connect(&ph, false).await;
    publisher.send(60, 20, Duration::from_millis(10)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(sub.seen().contains_key("pub:video") && sub.seen().contains_key("pub:audio"));
    while log_rx.try_recv().is_ok() {}

    let mut video = None;
    for s in publisher.client.pc.get_senders().await {
        if s.track().track().await.kind() == rtc::rtp_transceiver::rtp_sender::RtpCodecKind::Video {
            video = Some(s);
        }
    }
    let video = video.expect("video sender");
    publisher
        .client
        .pc
        .remove_track(&video)
        .await
        .expect("remove");
    let answer = ph
        .publish_offer(publisher.client.offer().await)
        .await
        .expect("answer without video");
    publisher.client.apply_answer(answer).await;
    let videos_before = sub.seen().get("pub:video").map_or(0, Vec::len);
    let audio_before = sub.seen().get("pub:audio").map_or(0, Vec::len);
    publisher.send(60, 20, Duration::from_millis(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut offer = None;
    while let Ok(e) = log_rx.try_recv() {
        if let Event::SubscribeOffer { sdp } = e {
            offer = Some(sdp);
        }
    }
    let offer = offer.expect("a new subscribe offer after the removal");
    let video_section = offer
        .split("\r\nm=")
        .find(|m| m.starts_with("video"))
        .expect("the video m-line stays (m-lines are never removed)");
    // The SFU no longer sends on it (recvonly, inactive or stopped): the browser ends the track.
    let stopped = video_section.starts_with("video 0 ");
    let sending = ["a=sendonly", "a=sendrecv", "a=msid:"]
        .iter()
        .any(|a| video_section.contains(a));
    assert!(
        stopped || !sending,
        "the video section no longer sends:\n{video_section}"
    );
    let seen = sub.seen();
    assert_eq!(
        seen.get("pub:video").map_or(0, Vec::len),
        videos_before,
        "no video after the removal"
    );
    assert!(
        seen.get("pub:audio").map_or(0, Vec::len) >= audio_before + 50,
        "audio flows on"
    );
}

/// A client whose offers name no tracks (no a=msid, which SDP allows) gets each track
/// forwarded as its own stream, and keeps them across a renegotiation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracks_of_a_client_that_names_none_stay_apart_and_survive_a_renegotiation() {
    let unnamed = |sdp: String| {
        sdp.split("\r\n")
            .filter(|l| !l.starts_with("a=msid:") && !l.contains(" msid:"))
            .collect::<Vec<_>>()
            .join("\r\n")
    };
    let sfu = start_sfu(false).await;
    let (_sh, sub) = join_subscriber(&sfu, "room", "sub").await;
    let (ph, _pev) = sfu.join("room", "pub").await.expect("join");
    let publisher = Publisher::negotiate(false, |offer| async {
        ph.publish_offer(unnamed(offer)).await.expect("answer")
    })
    .await;
    publisher.send(150, 20, Duration::from_millis(10)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let seen = sub.seen();
    assert_eq!(seen.len(), 2, "audio and video apart: {:?}", seen.keys());
    for (id, packets) in &seen {
        assert!(packets.len() >= 50, "{id}: {} packets", packets.len());
        assert!(
            packets.iter().all(|p| p.pt == packets[0].pt),
            "{id}: one stream's payload type only"
        );
        assert_continuous(id, packets);
    }

    publisher.client.pc.restart_ice().await.expect("restart");
    let answer = ph
        .publish_offer(unnamed(publisher.client.offer().await))
        .await
        .expect("restart answer");
    publisher.client.apply_answer(answer).await;
    let before: usize = sub.seen().values().map(Vec::len).sum();
    publisher.send(60, 20, Duration::from_millis(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after: Vec<usize> = sub.seen().values().map(Vec::len).collect();
    assert_eq!(after.len(), 2);
    assert!(
        after.iter().sum::<usize>() >= before + 80,
        "both tracks flow on after the renegotiation: {before} -> {after:?}"
    );
}
