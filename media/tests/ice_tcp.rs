//! A subscriber that cannot use UDP receives media over passive ICE-TCP.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use mescon_media::Event;
use tokio::sync::mpsc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_only_subscriber_receives_media() {
    let sfu = start_sfu(true).await;
    let tcp = sfu.ice_tcp_addr().expect("ice-tcp on");
    let (log_tx, mut log_rx) = mpsc::unbounded_channel();
    let (sh, sev) = sfu.join("room", "tcp-sub").await.expect("join");
    let sub = Arc::new(Client::new(true).await);
    auto_answer(sh.clone(), sub.clone(), sev, log_tx);

    let (ph, _pev) = sfu.join("room", "pub").await.expect("join");
    let publisher = Publisher::connect(&ph, false).await;

    // Tracks open on their first packet, which triggers the subscribe offer.
    publisher.send(5, 30, Duration::from_millis(10)).await;
    // The subscribe offer advertises the passive TCP candidate on the shared port.
    let offer = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Some(Event::SubscribeOffer { sdp }) = log_rx.recv().await {
                return sdp;
            }
        }
    })
    .await
    .expect("subscribe offer");
    assert!(
        offer.contains(&format!(
            "{} {} typ host tcptype passive",
            tcp.ip(),
            tcp.port()
        )),
        "passive TCP candidate in offer:\n{offer}"
    );

    publisher.send(120, 30, Duration::from_millis(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let seen = sub.seen();
    let video = seen.get("pub:video").expect("video over TCP");
    let audio = seen.get("pub:audio").expect("audio over TCP");
    assert!(
        video.len() >= 50 && audio.len() >= 50,
        "{} / {}",
        video.len(),
        audio.len()
    );
    assert!(video[0].keyframe);
    assert_continuous("video", video);
    assert_continuous("audio", audio);
    let stats = sfu.stats().await;
    assert!(stats.tcp_connections >= 1, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_ips_are_advertised_in_host_candidates() {
    let mut cfg = mescon_media::SfuConfig::new("127.0.0.1:0".parse().expect("addr"));
    cfg.public_ips = vec!["203.0.113.7".parse().expect("ip")];
    cfg.ice_tcp = Some("127.0.0.1:0".parse().expect("addr"));
    let sfu = mescon_media::Sfu::start(cfg).await.expect("start");
    let (h, _ev) = sfu.join("r", "p").await.expect("join");
    let client = Client::new(false).await;
    let audio = local_track(
        rtc::rtp_transceiver::rtp_sender::RtpCodecKind::Audio,
        "a",
        5,
    );
    client
        .pc
        .add_track(audio as Arc<dyn webrtc::media_stream::track_local::TrackLocal>)
        .await
        .expect("track");
    let answer = h.publish_offer(client.offer().await).await.expect("answer");
    let udp = sfu.udp_addr().port();
    let tcp = sfu.ice_tcp_addr().expect("tcp").port();
    assert!(
        answer.contains(&format!("203.0.113.7 {udp} typ host")),
        "{answer}"
    );
    assert!(
        answer.contains(&format!("203.0.113.7 {tcp} typ host tcptype passive")),
        "{answer}"
    );
    assert!(
        !answer.contains("127.0.0.1"),
        "bound address not advertised"
    );
    assert!(answer.contains("a=ice-lite"));
}

/// A client that leaves but keeps its TCP socket open (a stuck tab, a client that never
/// closes) must not keep a task, a descriptor and a write queue in the SFU.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_closes_the_tcp_connection_the_client_keeps_open() {
    let sfu = start_sfu(true).await;
    let (log_tx, _log_rx) = mpsc::unbounded_channel();
    let (sh, sev) = sfu.join("room", "tcp-sub").await.expect("join");
    let sub = Arc::new(Client::new(true).await);
    auto_answer(sh.clone(), sub.clone(), sev, log_tx);
    let (ph, _pev) = sfu.join("room", "pub").await.expect("join");
    let publisher = Publisher::connect(&ph, false).await;
    // Tracks open on their first packet, then the subscriber is offered them and connects.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while sub.seen().get("pub:video").is_none_or(|v| v.is_empty()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no media over TCP in 10 s"
        );
        publisher.send(10, 30, Duration::from_millis(10)).await;
    }
    // The client may open one TCP connection per candidate pair it checks.
    assert!(sfu.stats().await.tcp_connections >= 1);

    sh.leave().await.expect("leave");
    // `sub` still holds its peer connection, and with it the TCP sockets. The one that carried
    // the connection closes at once; any other never carried a routable request and closes when
    // the SFU's first-packet timeout (10 s) runs out. Before the fix the first stayed forever.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let stats = sfu.stats().await;
        if stats.tcp_connections == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "TCP connection kept after leave: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ph.leave().await.expect("leave");
    let stats = sfu.stats().await;
    assert_eq!(
        (
            stats.ufrag_routes,
            stats.address_routes,
            stats.tcp_connections
        ),
        (0, 0, 0),
        "{stats:?}"
    );
    drop(sub);
}
