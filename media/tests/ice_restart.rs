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
