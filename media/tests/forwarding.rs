//! One publisher, three subscribers, real DTLS/SRTP over loopback through one UDP port.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use mescon_media::{Event, Pc};
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
