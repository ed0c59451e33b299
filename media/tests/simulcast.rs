//! A simulcast publisher (3 RIDs) and a subscriber that moves between layers: it starts low,
//! moves up at a keyframe, and never sees a sequence gap or a timestamp jump.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use mescon_media::Event;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriber_moves_between_layers_without_gaps() {
    let sfu = start_sfu(false).await;
    let (sh, sub) = join_subscriber(&sfu, "room", "sub").await;
    sh.set_max_layer(0).await.expect("small view");

    let (ph, mut pev) = sfu.join("room", "pub").await.expect("join");
    let mut publisher = SimulcastPublisher::connect(&ph).await;
    publisher.send_frames(150).await;

    let phase1 = sub.seen().get("pub:cam").cloned().unwrap_or_default();
    assert!(
        phase1.len() >= 50,
        "low layer flowing: {} packets",
        phase1.len()
    );
    assert!(
        phase1.iter().all(|p| p.head[2] == 0),
        "only layer 0 while the view is small"
    );
    assert!(phase1[0].keyframe);

    // The publisher hears that only the low layer is needed.
    let mut told = None;
    while let Ok(ev) = pev.try_recv() {
        if let Event::LayersNeeded { track, layers } = ev {
            told = Some((track, layers));
        }
    }
    assert_eq!(told, Some(("cam".to_owned(), [true, false, false])));

    // The view grows: the subscriber moves to the top layer at its next keyframe.
    sh.set_max_layer(2).await.expect("large view");
    publisher.send_frames(150).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let all = sub.seen().get("pub:cam").cloned().unwrap_or_default();
    let first_high = all
        .iter()
        .position(|p| p.head[2] == 2)
        .expect("moved up to layer 2");
    assert!(all[first_high].keyframe, "switch happens on a keyframe");
    assert!(all[first_high..].iter().all(|p| p.head[2] == 2), "stays up");
    assert_continuous("simulcast", &all);
    for w in all.windows(2) {
        let dt = w[1].ts.wrapping_sub(w[0].ts) as i32;
        assert!(
            (0..=9_000).contains(&dt),
            "timestamp step {dt} between seq {} and {}",
            w[0].seq,
            w[1].seq
        );
    }
    assert_eq!(
        all.iter()
            .map(|p| p.ssrc)
            .collect::<std::collections::HashSet<_>>()
            .len(),
        1
    );
    let _ = &publisher.client;
}

/// The packet after the keyframe a switch waits for arrives first (the network reordered
/// them). It is not sent, as the subscriber is not on its layer yet, but once the keyframe
/// starts the layer it belongs in the subscriber's numbering, which asks for it: it must still
/// be there to resend, though nobody had been sent it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_packet_that_overtakes_the_switch_keyframe_is_repaired() {
    let sfu = start_sfu(false).await;
    let (sh, sub) = join_subscriber(&sfu, "room", "sub").await;
    sh.set_max_layer(0).await.expect("small view");
    let (ph, _pev) = sfu.join("room", "pub").await.expect("join");
    let mut publisher = SimulcastPublisher::connect(&ph).await;
    publisher.send_frames(100).await;

    sh.set_max_layer(2).await.expect("large view");
    publisher.overtake_keyframe = Some(2);
    publisher.send_frames(150).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        publisher.overtake_keyframe, None,
        "a keyframe was overtaken"
    );

    let all = in_order(&sub.seen().get("pub:cam").cloned().unwrap_or_default());
    let first_high = all
        .iter()
        .position(|p| p.head[2] == 2)
        .expect("moved up to layer 2");
    assert!(all[first_high].keyframe, "switch happens on a keyframe");
    assert_continuous("overtaken keyframe", &all);
    // (The test client keeps asking for a packet it got through RTX: its NACK generator
    // does not count RTX as the packet, so what it asks for later is no longer there.)
    let repairs = sfu.stats().await.repairs;
    assert!(
        repairs.sent >= 1,
        "the overtaking packet was resent: {repairs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_the_publisher_stops_sending_is_left_for_one_still_flowing() {
    let sfu = start_sfu(false).await;
    let (_sh, sub) = join_subscriber(&sfu, "room", "sub").await;

    let (ph, _pev) = sfu.join("room", "pub").await.expect("join");
    let mut publisher = SimulcastPublisher::connect(&ph).await;
    // Long enough for every layer to be measured and the subscriber to move up to the top.
    let mut top = false;
    for _ in 0..20 {
        publisher.send_frames(50).await;
        let seen = sub.seen().get("pub:cam").cloned().unwrap_or_default();
        if seen.last().is_some_and(|p| p.head[2] == 2) {
            top = true;
            break;
        }
    }
    assert!(top, "the subscriber reached the top layer");

    // The publisher's uplink estimate falls and its browser stops sending the top layer.
    let before = sub.seen().get("pub:cam").map_or(0, |v| v.len());
    publisher.active = [true, true, false];
    publisher.send_frames(300).await;
    let all = sub.seen().get("pub:cam").cloned().unwrap_or_default();
    let after = &all[before..];
    let resumed = after
        .iter()
        .position(|p| p.head[2] < 2)
        .expect("video resumed from a layer still flowing");
    assert!(after[resumed].keyframe, "resumed at a keyframe");
    // 300 frames at 10 ms: within ~1.5 s (the stop is noticed after 1 s, then a keyframe)
    // video flows again, and keeps flowing.
    assert!(
        after.len() - resumed >= 100,
        "{} packets after resuming at packet {resumed}",
        after.len() - resumed
    );
    assert_continuous("layer stopped", &all);
}

/// Token bucket over what the SFU sends the subscriber: `rate` bytes/s (0: unlimited).
struct Limiter {
    rate: Arc<std::sync::atomic::AtomicU64>,
    state: std::sync::Mutex<(f64, std::time::Instant)>,
}

impl Limiter {
    fn judge(&self, len: usize) -> Verdict {
        let rate = self.rate.load(std::sync::atomic::Ordering::Relaxed) as f64;
        if rate == 0.0 {
            return Verdict::Pass;
        }
        let Ok(mut s) = self.state.lock() else {
            return Verdict::Pass;
        };
        let now = std::time::Instant::now();
        // Bucket depth: 100 ms worth.
        s.0 = (s.0 + now.duration_since(s.1).as_secs_f64() * rate).min(rate / 10.0);
        s.1 = now;
        if s.0 >= len as f64 {
            s.0 -= len as f64;
            Verdict::Pass
        } else {
            Verdict::Drop
        }
    }
}

fn layers_of(seen: &[Seen]) -> Vec<u8> {
    seen.iter().map(|p| p.head[2]).collect()
}

/// Each packet once, in sequence order. Under loss the client's NACK generator keeps asking
/// for (and receiving) some old packets again, so arrival order repeats history.
fn in_order(seen: &[Seen]) -> Vec<Seen> {
    let Some(base) = seen.first().map(|p| p.seq) else {
        return Vec::new();
    };
    let mut v: Vec<Seen> = Vec::new();
    let mut have = std::collections::HashSet::new();
    for p in seen {
        if have.insert(p.seq) {
            v.push(p.clone());
        }
    }
    v.sort_by_key(|p| p.seq.wrapping_sub(base));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bandwidth_limited_subscriber_gets_low_layer_then_moves_up() {
    let sfu = start_sfu(false).await;
    let sfu_addr = sfu.udp_addr();
    let rate = Arc::new(std::sync::atomic::AtomicU64::new(150_000 / 8));
    let limiter = Limiter {
        rate: rate.clone(),
        state: std::sync::Mutex::new((0.0, std::time::Instant::now())),
    };
    let proxy = Arc::new(Proxy::spawn(sfu_addr, move |d| limiter.judge(d.len())).await);
    let (sh, sev) = sfu.join("room", "sub").await.expect("join");
    let sub = Arc::new(Client::new(false).await);
    answer_via_proxy(sh, sub.clone(), proxy.clone(), sfu_addr, sev);

    let (ph, _pev) = sfu.join("room", "pub").await.expect("join");
    let mut publisher = SimulcastPublisher::connect(&ph).await;
    publisher.sizes = BWE_SIZES;
    publisher.interval = Duration::from_millis(20);

    // Limited to 150 kbit/s: the estimate falls and the subscriber settles on layer 0.
    publisher.send_frames(250).await;
    let limited = in_order(&sub.seen().get("pub:cam").cloned().unwrap_or_default());
    let tail = layers_of(&limited[limited.len().saturating_sub(50)..]);
    assert!(
        tail.len() == 50 && tail.iter().all(|l| *l == 0),
        "low layer under the limit: {tail:?}"
    );

    // The limit lifts: the estimate grows and the subscriber moves up.
    rate.store(0, std::sync::atomic::Ordering::Relaxed);
    let mut moved = false;
    for _ in 0..30 {
        publisher.send_frames(50).await;
        let now = in_order(&sub.seen().get("pub:cam").cloned().unwrap_or_default());
        if layers_of(&now[limited.len()..]).iter().any(|l| *l > 0) {
            moved = true;
            break;
        }
    }
    assert!(moved, "moved above layer 0 after the limit lifted");
    let all = in_order(&sub.seen().get("pub:cam").cloned().unwrap_or_default());
    let first_up = limited.len()
        + layers_of(&all[limited.len()..])
            .iter()
            .position(|l| *l > 0)
            .unwrap_or(0);
    assert!(all[first_up].keyframe, "moved up at a keyframe");
    let _ = &publisher.client;
}

/// A room's bitrate budget is shared by its subscribers: alone, one gets the top layer; when
/// a second joins, each share fits only the middle one, and the first moves down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_room_bitrate_limit_is_shared_by_its_subscribers() {
    let mut cfg = mescon_media::SfuConfig::new("127.0.0.1:0".parse().expect("addr"));
    cfg.workers = 2;
    // Layers of SIZES at 100 frames/s: ~20, ~80 and >= 200 kbit/s. Alone: 360 kbit/s, room
    // for the top layer; shared by two: 180 kbit/s each, room for the middle one only.
    cfg.limits.max_room_bitrate = 360_000;
    let sfu = mescon_media::Sfu::start(cfg).await.expect("start");
    let (_h1, first) = join_subscriber(&sfu, "room", "first").await;
    let (ph, _pev) = sfu.join("room", "pub").await.expect("join");
    let mut publisher = SimulcastPublisher::connect(&ph).await;
    let latest = |c: &Client| {
        in_order(&c.seen().get("pub:cam").cloned().unwrap_or_default())
            .last()
            .map(|p| p.head[2])
    };
    let mut rounds = 0;
    while latest(&first) != Some(2) {
        rounds += 1;
        assert!(rounds <= 40, "alone, the top layer: {:?}", latest(&first));
        publisher.send_frames(25).await;
    }

    let (_h2, second) = join_subscriber(&sfu, "room", "second").await;
    publisher.send_frames(300).await;
    for (name, sub) in [("first", &first), ("second", &second)] {
        let seen = in_order(&sub.seen().get("pub:cam").cloned().unwrap_or_default());
        let tail = layers_of(&seen[seen.len().saturating_sub(50)..]);
        assert!(
            tail.len() == 50 && tail.iter().all(|l| *l == 1),
            "{name}: the middle layer within its share: {tail:?}"
        );
        assert_continuous(name, &seen);
    }
}

/// One subscriber's bitrate ceiling (`MESCON_CALL_MAX_BITRATE` in the application) holds even
/// when the estimate and the room would allow more: the middle layer, never the top one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subscriber_bitrate_limit_caps_the_layer() {
    let mut cfg = mescon_media::SfuConfig::new("127.0.0.1:0".parse().expect("addr"));
    // Layers of SIZES at 100 frames/s: ~20, ~80 and >= 200 kbit/s.
    cfg.limits.max_subscriber_bitrate = 180_000;
    let sfu = mescon_media::Sfu::start(cfg).await.expect("start");
    let (_h, sub) = join_subscriber(&sfu, "room", "sub").await;
    let (ph, _pev) = sfu.join("room", "pub").await.expect("join");
    let mut publisher = SimulcastPublisher::connect(&ph).await;
    publisher.send_frames(400).await;
    let seen = in_order(&sub.seen().get("pub:cam").cloned().unwrap_or_default());
    let layers = layers_of(&seen);
    let tail = &layers[layers.len().saturating_sub(50)..];
    assert!(
        tail.len() == 50 && tail.iter().all(|l| *l == 1),
        "the middle layer under the ceiling: {tail:?}"
    );
    assert!(!layers.contains(&2), "never the top layer: {layers:?}");
    assert_continuous("sub", &seen);
}

/// A layer switch asks the publisher for a keyframe of the new layer (PLI) instead of waiting
/// for the encoder's next one; nothing is asked while the layer stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_switch_requests_a_keyframe() {
    use std::sync::atomic::Ordering::Relaxed;
    let sfu = start_sfu(false).await;
    let sfu_addr = sfu.udp_addr();
    // Counts the PLIs (PSFB, FMT 1) the SFU sends the publisher.
    let proxy = Proxy::spawn(sfu_addr, |d| {
        if d.len() >= 12 && d[1] == 206 && d[0] & 0x1f == 1 {
            Verdict::Count
        } else {
            Verdict::Pass
        }
    })
    .await;
    let (sh, sub) = join_subscriber(&sfu, "room", "sub").await;
    sh.set_max_layer(0).await.expect("small view");
    let (ph, _pev) = sfu.join("room", "pub").await.expect("join");
    let mut publisher = SimulcastPublisher::connect_through(&ph, &proxy, sfu_addr).await;
    publisher.send_frames(150).await;
    assert!(
        sub.seen().get("pub:cam").is_some_and(|v| v.len() >= 50),
        "the low layer flows"
    );
    let settled = proxy.counted.load(Relaxed);
    publisher.send_frames(100).await;
    assert_eq!(
        proxy.counted.load(Relaxed),
        settled,
        "no keyframe requests while the layer stays"
    );

    sh.set_max_layer(2).await.expect("large view");
    publisher.send_frames(40).await;
    assert!(
        proxy.counted.load(Relaxed) > settled,
        "the switch to the top layer asked the publisher for a keyframe"
    );
}
