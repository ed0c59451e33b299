//! Room policy: active speaker from audio levels, and per-room limits.

mod common;

use std::time::Duration;

use common::*;
use mescon_media::{Error, Event, Sfu, SfuConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loudest_publisher_becomes_active_speaker() {
    let sfu = start_sfu(false).await;
    let (_lh, mut listener) = sfu.join("room", "listener").await.expect("join");
    let (qh, _qev) = sfu.join("room", "quiet").await.expect("join");
    let (lh, _lev) = sfu.join("room", "loud").await.expect("join");
    let mut quiet = Publisher::connect(&qh, false).await;
    let mut loud = Publisher::connect(&lh, false).await;
    let uri = rtc::sdp::extmap::AUDIO_LEVEL_URI;
    quiet.audio_level = Some((extmap_id(&quiet.answer, uri).expect("negotiated"), 110));
    loud.audio_level = Some((extmap_id(&loud.answer, uri).expect("negotiated"), 15));

    let send_quiet = quiet.send(60, 30, Duration::from_millis(10));
    let send_loud = loud.send(60, 30, Duration::from_millis(10));
    tokio::join!(send_quiet, send_loud);

    let mut speakers = Vec::new();
    while let Ok(ev) = listener.try_recv() {
        if let Event::ActiveSpeaker { participant } = ev {
            speakers.push(participant);
        }
    }
    assert_eq!(
        speakers,
        vec!["loud".to_owned()],
        "one announcement, of the loud one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participant_limit_is_enforced_per_room() {
    let mut cfg = SfuConfig::new("127.0.0.1:0".parse().expect("addr"));
    cfg.limits.max_participants = 2;
    let sfu = Sfu::start(cfg).await.expect("start");
    let _a = sfu.join("r", "a").await.expect("first");
    let _b = sfu.join("r", "b").await.expect("second");
    assert!(matches!(sfu.join("r", "c").await, Err(Error::Limit(_))));
    assert!(matches!(
        sfu.join("r", "a").await,
        Err(Error::AlreadyJoined)
    ));
    // Another room has its own count.
    assert!(sfu.join("r2", "c").await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_a_room_removes_everyone() {
    let sfu = start_sfu(false).await;
    let (ph, mut pev) = sfu.join("call", "pub").await.expect("join");
    let (_sh, mut sev) = sfu.join("call", "sub").await.expect("join");
    let _publisher = Publisher::connect(&ph, false).await;
    assert!(sfu.close_room("call").await.expect("close"));
    assert!(!sfu.close_room("call").await.expect("close again"));
    let held = mescon_media::SfuStats {
        forward_delay: Default::default(),
        media_in: Default::default(),
        repairs: Default::default(),
        ..sfu.stats().await
    };
    assert_eq!(held, mescon_media::SfuStats::default());
    // Event streams end once the participant is gone.
    let drained = tokio::time::timeout(Duration::from_secs(2), async {
        while pev.recv().await.is_some() {}
        while sev.recv().await.is_some() {}
    })
    .await;
    assert!(drained.is_ok(), "event receivers closed");
    assert!(ph.leave().await.is_err(), "already gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn track_limit_caps_what_is_forwarded() {
    let mut cfg = SfuConfig::new("127.0.0.1:0".parse().expect("addr"));
    cfg.limits.max_tracks = 1;
    let sfu = Sfu::start(cfg).await.expect("start");
    let (sh, sev) = sfu.join("r", "sub").await.expect("join");
    let sub = std::sync::Arc::new(Client::new(false).await);
    let (log_tx, _log) = tokio::sync::mpsc::unbounded_channel();
    auto_answer(sh, sub.clone(), sev, log_tx);
    let (ph, mut pev) = sfu.join("r", "pub").await.expect("join");
    let publisher = Publisher::connect(&ph, false).await;
    publisher.send(100, 20, Duration::from_millis(10)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let seen = sub.seen();
    assert_eq!(
        seen.len(),
        1,
        "one of the two tracks forwarded: {:?}",
        seen.keys()
    );
    assert!(seen.values().all(|v| v.len() >= 40));
    // The publisher is told which of its tracks went nowhere, once.
    let mut refused = Vec::new();
    while let Ok(event) = pev.try_recv() {
        if let Event::TrackRefused { track, reason } = event {
            refused.push((track, reason));
        }
    }
    assert_eq!(refused.len(), 1, "{refused:?}");
    let forwarded = seen.keys().next().expect("one track");
    assert!(
        !forwarded.ends_with(&format!(":{}", refused[0].0)),
        "the refused track is not the forwarded one: {forwarded} vs {refused:?}"
    );
    assert_eq!(refused[0].1, "tracks per room");
}
