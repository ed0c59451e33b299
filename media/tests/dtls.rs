//! The DTLS handshake over a line that loses its last flight.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;

/// With a browser's subscribe connection the SFU is the DTLS server (browsers answer `active`),
/// so its ChangeCipherSpec and Finished end the handshake. When they are lost the client
/// repeats its own last flight, and the SFU must send them again (RFC 6347 §4.2.4), or the
/// subscriber never connects. (`rtc` 0.21.1 does, about a second later; this guards it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_whose_finished_is_lost_still_connects() {
    let sfu = start_sfu(false).await;
    let sfu_addr = sfu.udp_addr();
    // Drops the first datagram from the SFU that opens with a ChangeCipherSpec record: the
    // server's last flight.
    let dropped = Arc::new(AtomicUsize::new(0));
    let proxy = Arc::new(
        Proxy::spawn(sfu_addr, {
            let dropped = dropped.clone();
            move |d| {
                if d.first() == Some(&20) && dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                    Verdict::Drop
                } else {
                    Verdict::Pass
                }
            }
        })
        .await,
    );
    let (sh, sev) = sfu.join("room", "sub").await.expect("join");
    let sub = Arc::new(Client::answering_as_dtls_client().await);
    answer_via_proxy(sh, sub.clone(), proxy.clone(), sfu_addr, sev);
    let (ph, _pev) = sfu.join("room", "pub").await.expect("join");
    let publisher = Publisher::connect(&ph, false).await;

    let start = Instant::now();
    let mut got = 0;
    while start.elapsed() < Duration::from_secs(8) && got < 20 {
        publisher.send(10, 10, Duration::from_millis(10)).await;
        got = sub.seen().get("pub:video").map_or(0, Vec::len);
    }
    assert!(
        dropped.load(Ordering::Relaxed) >= 2,
        "the last flight was lost and sent again"
    );
    assert!(
        got >= 20,
        "the subscriber connected and gets video ({got} packets in {:?})",
        start.elapsed()
    );
}
