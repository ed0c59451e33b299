//! ICE restart: new credentials re-key the routes, and media keeps flowing.

mod common;

use std::time::Duration;

use common::*;

fn ufrag(sdp: &str) -> String {
    sdp.lines()
        .find_map(|l| l.strip_prefix("a=ice-ufrag:"))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_ice_restart_rekeys_and_media_continues() {
    let sfu = start_sfu(false).await;
    let (_sh, sub) = join_subscriber(&sfu, "room", "sub").await;
    let (ph, _pev) = sfu.join("room", "pub").await.expect("join");
    let publisher = Publisher::connect(&ph, false).await;
    publisher.send(60, 20, Duration::from_millis(10)).await;
    let first_ufrag = ufrag(&publisher.answer);

    // The client restarts ICE: a new offer with new credentials through the same call.
    publisher.client.pc.restart_ice().await.expect("restart");
    let offer = publisher.client.offer().await;
    let answer = ph.publish_offer(offer).await.expect("restart answer");
    publisher.client.apply_answer(answer.clone()).await;
    let second_ufrag = ufrag(&answer);
    assert_ne!(first_ufrag, second_ufrag, "the SFU's credentials changed");
    let stats = sfu.stats().await;
    assert_eq!(
        stats.ufrag_routes, 2,
        "old ufrag replaced, not added: {stats:?}"
    );

    let before = sub.seen().get("pub:audio").map_or(0, Vec::len);
    publisher.send(100, 20, Duration::from_millis(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let audio = sub.seen().get("pub:audio").cloned().unwrap_or_default();
    assert!(
        audio.len() >= before + 80,
        "media after restart: {} -> {}",
        before,
        audio.len()
    );
    // Packets the client sends while its own ICE restarts may be lost (audio has no NACK);
    // what follows must be continuous again.
    assert_continuous("audio after restart", &audio[before + 10..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriber_ice_restart_gets_a_fresh_offer_and_media_continues() {
    use mescon_media::Event;
    let sfu = start_sfu(false).await;
    let (sh, sev) = sfu.join("room", "sub").await.expect("join");
    let sub = std::sync::Arc::new(Client::new(false).await);
    let (log_tx, mut log_rx) = tokio::sync::mpsc::unbounded_channel();
    auto_answer(sh.clone(), sub.clone(), sev, log_tx);
    let (ph, _pev) = sfu.join("room", "pub").await.expect("join");
    let publisher = Publisher::connect(&ph, false).await;
    publisher.send(60, 20, Duration::from_millis(10)).await;
    let mut last_offer = || {
        let mut last = None;
        while let Ok(e) = log_rx.try_recv() {
            if let Event::SubscribeOffer { sdp } = e {
                last = Some(sdp);
            }
        }
        last
    };
    let first_ufrag = ufrag(&last_offer().expect("a subscribe offer"));

    // The subscriber's network changed: the application asks for a fresh subscribe offer.
    sh.restart_ice().await.expect("restart");
    let before = sub.seen().get("pub:audio").map_or(0, Vec::len);
    publisher.send(100, 20, Duration::from_millis(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second_ufrag = ufrag(&last_offer().expect("a fresh subscribe offer"));
    assert_ne!(first_ufrag, second_ufrag, "the SFU's credentials changed");
    let stats = sfu.stats().await;
    assert_eq!(
        stats.ufrag_routes, 2,
        "old ufrag replaced, not added: {stats:?}"
    );
    let audio = sub.seen().get("pub:audio").cloned().unwrap_or_default();
    assert!(
        audio.len() >= before + 80,
        "media after restart: {} -> {}",
        before,
        audio.len()
    );
    // The client drops what arrives while its own agent restarts (audio has no NACK): a few
    // packets at most, then the stream is continuous again.
    let lost = audio
        .windows(2)
        .map(|w| w[1].seq.wrapping_sub(w[0].seq).saturating_sub(1) as usize)
        .sum::<usize>();
    assert!(lost <= 5, "{lost} audio packets lost across the restart");
    assert_continuous("audio after the restart", &audio[before + 10..]);
}
