//! Leaving and failing free everything: routes, connections, rooms, tasks and descriptors.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use mescon_media::{Event, Pc, Sfu, SfuConfig, SfuStats};
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use webrtc::media_stream::track_local::TrackLocal;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// What the SFU still holds, once closed client sockets and tasks have wound down (the delay
/// histogram and the packet counts are history, not something held, so they are left out).
async fn settle(sfu: &Sfu) -> SfuStats {
    let held = |s: SfuStats| SfuStats {
        forward_delay: Default::default(),
        media_in: Default::default(),
        repairs: Default::default(),
        ..s
    };
    for _ in 0..50 {
        let s = held(sfu.stats().await);
        if s == SfuStats::default() {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    held(sfu.stats().await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_join_leave_cycles_leave_nothing_behind() {
    let sfu = start_sfu(true).await;
    // An offer to publish one audio track, reused: each cycle still builds a fresh connection.
    let template = Client::new(false).await;
    let a = local_track(RtpCodecKind::Audio, "a", 9);
    template
        .pc
        .add_track(a as Arc<dyn TrackLocal>)
        .await
        .expect("track");
    let offer = template.offer().await;
    template.pc.close().await.expect("close");
    drop(template);

    // Warm up once with real peers (over UDP and over ICE-TCP) so lazily created runtime
    // resources are in the baseline.
    connected_cycle(&sfu, 0, false).await;
    connected_cycle(&sfu, 1, true).await;
    settle(&sfu).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (fds0, tasks0) = (open_fds(), alive_tasks());

    // Every tenth cycle really connects and exchanges media, every other one of those with a
    // subscriber on ICE-TCP (a task pair and a descriptor per TCP connection in the SFU).
    for i in 0..200 {
        if i % 10 == 0 {
            connected_cycle(&sfu, i, i % 20 == 0).await;
        } else {
            let (h, _ev) = sfu.join("churn", &format!("p{i}")).await.expect("join");
            h.publish_offer(offer.clone()).await.expect("answer");
            let mid = sfu.stats().await;
            assert_eq!((mid.connections, mid.ufrag_routes), (1, 1), "{mid:?}");
            h.leave().await.expect("leave");
        }
    }

    let stats = settle(&sfu).await;
    assert_eq!(
        stats,
        SfuStats::default(),
        "no rooms, connections or routes left"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (fds1, tasks1) = (open_fds(), alive_tasks());
    assert!(
        fds1 <= fds0,
        "file descriptors: {fds0} before, {fds1} after"
    );
    assert!(tasks1 <= tasks0, "tasks: {tasks0} before, {tasks1} after");
}

/// A publisher and a subscriber (over ICE-TCP if `tcp`) that really connect and exchange
/// media, then both leave.
async fn connected_cycle(sfu: &Sfu, i: usize, tcp: bool) {
    let room = format!("live{i}");
    let (log_tx, mut log_rx) = tokio::sync::mpsc::unbounded_channel();
    let (sh, sev) = sfu.join(&room, "sub").await.expect("join");
    let sub = Arc::new(Client::new(tcp).await);
    auto_answer(sh.clone(), sub.clone(), sev, log_tx);
    let (ph, _pev) = sfu.join(&room, "pub").await.expect("join");
    let publisher = Publisher::connect(&ph, false).await;
    // Send until media arrives (the subscribe connection is negotiated on the first packet).
    for _ in 0..100 {
        publisher.send(10, 5, Duration::from_millis(5)).await;
        if sub.seen().get("pub:video").is_some_and(|v| !v.is_empty()) {
            break;
        }
    }
    if sub.seen().get("pub:video").is_none_or(|v| v.is_empty()) {
        let mut events = Vec::new();
        while let Ok(e) = log_rx.try_recv() {
            events.push(match e {
                Event::SubscribeOffer { sdp } => {
                    format!("offer({} m-lines)", sdp.matches("m=").count())
                }
                other => format!("{other:?}"),
            });
        }
        panic!(
            "cycle {i}: no media; seen {:?}; sub events {events:?}; {:?}",
            sub.seen().keys().collect::<Vec<_>>(),
            sfu.stats().await
        );
    }
    ph.leave().await.expect("publisher leaves");
    sh.leave().await.expect("subscriber leaves");
    publisher.client.pc.close().await.expect("close");
    sub.pc.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_connects_fails_and_is_removed() {
    let mut cfg = SfuConfig::new("127.0.0.1:0".parse().expect("addr"));
    cfg.connect_timeout = Duration::from_millis(300);
    let sfu = Sfu::start(cfg).await.expect("start");
    let client = Client::new(false).await;
    let a = local_track(RtpCodecKind::Audio, "a", 9);
    client
        .pc
        .add_track(a as Arc<dyn TrackLocal>)
        .await
        .expect("track");
    let offer = client.offer().await;
    client.pc.close().await.expect("close");
    let (h, mut ev) = sfu.join("r", "ghost").await.expect("join");
    h.publish_offer(offer).await.expect("answer");
    let failed = tokio::time::timeout(Duration::from_secs(3), ev.recv())
        .await
        .expect("event in time");
    assert_eq!(failed, Some(Event::Failed { pc: Pc::Publish }));
    assert_eq!(settle(&sfu).await, SfuStats::default());
    assert!(h.leave().await.is_err(), "already removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_subscribe_offer_is_not_a_failure() {
    let mut cfg = SfuConfig::new("127.0.0.1:0".parse().expect("addr"));
    cfg.connect_timeout = Duration::from_millis(300);
    cfg.workers = 1;
    let sfu = Sfu::start(cfg).await.expect("start");
    let (_lazy, mut lazy_events) = sfu.join("r", "lazy").await.expect("join");
    let (ph, _pev) = sfu.join("r", "pub").await.expect("join");
    let publisher = Publisher::connect(&ph, false).await;
    publisher.send(80, 20, Duration::from_millis(10)).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut offered = false;
    while let Ok(ev) = lazy_events.try_recv() {
        assert!(!matches!(ev, Event::Failed { .. }), "not failed: {ev:?}");
        offered |= matches!(ev, Event::SubscribeOffer { .. });
    }
    assert!(offered, "an offer was made and left unanswered");
    assert_eq!(sfu.stats().await.participants, 2);
}

/// A client that connected and then goes silent (its network died, its laptop slept) is failed
/// once the ICE timeouts run out (5 s to disconnected, 15 s more to failed), and everything it
/// held is freed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connected_client_that_goes_silent_fails_and_is_removed() {
    let sfu = start_sfu(false).await;
    let sfu_addr = sfu.udp_addr();
    let proxy = Proxy::spawn(sfu_addr, |_| Verdict::Pass).await;
    let (ph, mut events) = sfu.join("r", "pub").await.expect("join");
    let publisher = Publisher::negotiate(false, |offer| async {
        let answer = ph.publish_offer(offer).await.expect("answer");
        proxy.rewrite(&answer, sfu_addr)
    })
    .await;
    publisher.send(20, 10, Duration::from_millis(10)).await;
    assert_eq!(
        next(&mut events, 5).await,
        Some(Event::Connected { pc: Pc::Publish })
    );

    // The path dies both ways; the client itself stays up and says nothing.
    drop(proxy);
    let started = std::time::Instant::now();
    assert_eq!(
        next(&mut events, 30).await,
        Some(Event::Failed { pc: Pc::Publish }),
        "failed after the ICE timeouts"
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(15),
        "not before the timeouts: {waited:?}"
    );
    assert_eq!(settle(&sfu).await, SfuStats::default());
    assert!(ph.leave().await.is_err(), "already removed");
    drop(publisher);
}

/// The next event within `secs` seconds.
async fn next(
    events: &mut tokio::sync::mpsc::UnboundedReceiver<Event>,
    secs: u64,
) -> Option<Event> {
    tokio::time::timeout(Duration::from_secs(secs), events.recv())
        .await
        .ok()
        .flatten()
}
