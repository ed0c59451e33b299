//! RTCP paths: NACK answered with RTX, keyframe requests relayed and throttled, reports and
//! transport-wide-cc feedback to publishers.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use rtc::interceptor::{Packet, Slot, TaggedPacket, TwccSenderBuilder};
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::reception_report::ReceptionReport;
use rtc::rtcp::transport_feedbacks::transport_layer_cc::TransportLayerCc;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use tokio::sync::mpsc;
use webrtc::media_stream::track_remote::TrackRemote;

/// The RTX payload type paired with VP8 in the default codec set.
const RTX_PT: u8 = 97;

fn rtp_payload_type(d: &[u8]) -> Option<u8> {
    // RFC 7983: RTP/RTCP first byte 128..=191; RTCP packet types 192..=223 share the byte.
    if d.len() >= 12 && (128..=191).contains(&d[0]) && !(192..=223).contains(&d[1]) {
        Some(d[1] & 0x7f)
    } else {
        None
    }
}

/// A publisher and a subscriber whose VP8 media (never its RTX, PT 97) passes a proxy that drops
/// the packets `lose` names by their count from 0; the proxy counts the RTX packets.
async fn call_with_video_loss(
    sfu: &mescon_media::Sfu,
    lose: impl Fn(usize) -> bool + Send + Sync + 'static,
) -> (Arc<Client>, Arc<Proxy>, Publisher) {
    let sfu_addr = sfu.udp_addr();
    let n = Arc::new(AtomicUsize::new(0));
    let proxy = Arc::new(
        Proxy::spawn(sfu_addr, move |d| match rtp_payload_type(d) {
            Some(VP8_PT) if lose(n.fetch_add(1, Ordering::Relaxed)) => Verdict::Drop,
            Some(RTX_PT) => Verdict::Count,
            _ => Verdict::Pass,
        })
        .await,
    );
    let (sh, sev) = sfu.join("room", "sub").await.expect("join");
    let sub = Arc::new(Client::new(false).await);
    answer_via_proxy(sh, sub.clone(), proxy.clone(), sfu_addr, sev);
    let (ph, _pev) = sfu.join("room", "pub").await.expect("join");
    let publisher = Publisher::connect(&ph, false).await;
    (sub, proxy, publisher)
}

/// The distinct video sequence numbers the subscriber got, after checking none is missing
/// between the first and the last.
fn continuous_video(sub: &Client) -> usize {
    let seen = sub.seen();
    let mut seqs: Vec<u16> = seen["pub:video"].iter().map(|p| p.seq).collect();
    seqs.sort_unstable();
    seqs.dedup();
    let span = seqs.last().copied().unwrap_or(0) - seqs.first().copied().unwrap_or(0) + 1;
    assert_eq!(
        seqs.len(),
        span as usize,
        "every sequence number arrived ({} of {span})",
        seqs.len()
    );
    seqs.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_video_packets_are_recovered_through_rtx() {
    let sfu = start_sfu(false).await;
    // Every 10th VP8 media packet lost on its way to the subscriber.
    let (sub, proxy, publisher) = call_with_video_loss(&sfu, |n| n % 10 == 5).await;

    publisher.send(200, 50, Duration::from_millis(10)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let dropped = proxy.dropped.load(Ordering::Relaxed);
    assert!(dropped >= 10, "loss was induced: {dropped}");
    let got = continuous_video(&sub);
    assert!(got >= 150, "{got} video packets");
    let rtx = proxy.counted.load(Ordering::Relaxed);
    assert!(
        rtx >= dropped,
        "repairs came as RTX: {rtx} RTX packets for {dropped} losses"
    );
}

/// A subscriber's transport-wide-cc feedback confirms what it received, and a packet every
/// subscriber has confirmed leaves the publisher's cache at once: the cache holds what is in
/// flight and what was lost, not the whole repair horizon (300 ms or more). Lost packets stay
/// and are repaired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmed_packets_leave_the_cache_and_lost_ones_stay() {
    let sfu = start_sfu(false).await;
    // Ten VP8 packets in a row lost on the way to the subscriber, mid-stream.
    let (sub, proxy, publisher) = call_with_video_loss(&sfu, |n| (300..310).contains(&n)).await;

    // 500 video packets a second: 300 ms of them is 150 packets.
    publisher.send(800, 100, Duration::from_millis(2)).await;
    let held = sfu.stats().await.cached_packets;
    assert!(
        held <= 100,
        "{held} packets cached at the end of the stream: only those not yet confirmed"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        sfu.stats().await.cached_packets,
        0,
        "nothing is held for long"
    );

    assert_eq!(proxy.dropped.load(Ordering::Relaxed), 10);
    assert!(
        proxy.counted.load(Ordering::Relaxed) >= 10,
        "the lost packets were still cached when the subscriber asked for them"
    );
    let got = continuous_video(&sub);
    assert!(got >= 500, "{got} video packets");
    // A receiver asks only for what it lacks, and its feedback confirmed only what it has.
    let repairs = sfu.stats().await.repairs;
    assert!(repairs.sent >= 10, "{repairs:?}");
    assert_eq!(repairs.released, 0, "{repairs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyframe_requests_are_relayed_and_throttled() {
    let sfu = start_sfu(false).await;
    let sfu_addr = sfu.udp_addr();
    // Count PLIs (PSFB, FMT 1) the SFU sends to the publisher.
    let proxy = Arc::new(
        Proxy::spawn(sfu_addr, |d| {
            if d.len() >= 12 && d[1] == 206 && d[0] & 0x1f == 1 {
                Verdict::Count
            } else {
                Verdict::Pass
            }
        })
        .await,
    );
    let (sh, sev) = sfu.join("room", "sub").await.expect("join");
    let sub = Arc::new(Client::new(false).await);
    let (log_tx, _log) = mpsc::unbounded_channel();
    auto_answer(sh, sub.clone(), sev, log_tx);

    let (ph, _pev) = sfu.join("room", "pub").await.expect("join");
    let publisher = Publisher::negotiate(false, |offer| async {
        let answer = ph.publish_offer(offer).await.expect("answer");
        proxy.rewrite(&answer, sfu_addr)
    })
    .await;
    // Keyframes every 10 frames so the subscriber starts quickly.
    publisher.send(100, 10, Duration::from_millis(10)).await;
    let video_track: Arc<dyn TrackRemote> = {
        let tracks = sub.tracks.lock().expect("tracks").clone();
        let mut found = None;
        for t in tracks {
            if t.kind().await == RtpCodecKind::Video {
                found = Some(t);
            }
        }
        found.expect("subscriber has the video track")
    };
    let ssrc = video_track.ssrcs().await.first().copied().expect("ssrc");
    let before = proxy.counted.load(Ordering::Relaxed);

    // 30 PLIs in 1.5 s from the subscriber: the publisher must see about 3, not 30.
    for _ in 0..30 {
        video_track
            .write_rtcp(vec![Box::new(PictureLossIndication {
                sender_ssrc: 1,
                media_ssrc: ssrc,
            })])
            .await
            .expect("send pli");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    let relayed = proxy.counted.load(Ordering::Relaxed) - before;
    assert!(
        (2..=5).contains(&relayed),
        "{relayed} PLIs reached the publisher"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sender_reports_reach_subscribers_and_receiver_reports_reach_publishers() {
    let sfu = start_sfu(false).await;
    let sfu_addr = sfu.udp_addr();
    // The first RTCP header of an SRTCP compound is in the clear: count SR (200) and RR (201).
    let to_sub = Arc::new(
        Proxy::spawn(sfu_addr, |d| {
            if d.len() >= 8 && d[1] == 200 {
                Verdict::Count
            } else {
                Verdict::Pass
            }
        })
        .await,
    );
    let to_pub = Arc::new(
        Proxy::spawn(sfu_addr, |d| {
            if d.len() >= 8 && d[1] == 201 {
                Verdict::Count
            } else {
                Verdict::Pass
            }
        })
        .await,
    );
    let (sh, sev) = sfu.join("room", "sub").await.expect("join");
    let sub = Arc::new(Client::new(false).await);
    answer_via_proxy(sh, sub.clone(), to_sub.clone(), sfu_addr, sev);

    let (ph, _pev) = sfu.join("room", "pub").await.expect("join");
    let publisher = Publisher::negotiate(false, |offer| async {
        let answer = ph.publish_offer(offer).await.expect("answer");
        to_pub.rewrite(&answer, sfu_addr)
    })
    .await;
    publisher.send(300, 30, Duration::from_millis(10)).await;
    let srs = to_sub.counted.load(Ordering::Relaxed);
    let rrs = to_pub.counted.load(Ordering::Relaxed);
    assert!(srs >= 2, "sender reports to the subscriber: {srs}");
    assert!(rrs >= 2, "receiver reports to the publisher: {rrs}");
}

/// The SFU reads most of a publisher's media with its own receiver, past the connection; the
/// publisher's estimate still needs every packet accounted for. Receiver reports must follow the
/// streams to their last packet with nothing lost, and transport-wide-cc feedback must report
/// (nearly) every packet received, and a loss-free stream must draw no NACK.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feedback_to_the_publisher_covers_every_packet() {
    let sfu = start_sfu(false).await;
    let (_sh, _sub) = join_subscriber(&sfu, "room", "sub").await;
    let (ph, _pev) = sfu.join("room", "pub").await.expect("join");
    // Wire-most on the publisher: a copy of the reports and feedback the SFU sends it.
    let reports: Arc<Mutex<Vec<ReceptionReport>>> = Default::default();
    let twcc: Arc<Mutex<Vec<TransportLayerCc>>> = Default::default();
    let nacks = Arc::new(AtomicUsize::new(0));
    let (r_log, t_log, n_log) = (reports.clone(), twcc.clone(), nacks.clone());
    let log = ReadTap::new(move |msg: &TaggedPacket| {
        let Packet::Rtcp(packets) = &msg.message.packet else {
            return;
        };
        for p in packets {
            let any = p.as_any();
            if let (Some(rr), Ok(mut log)) = (any.downcast_ref::<ReceiverReport>(), r_log.lock()) {
                log.extend(rr.reports.iter().cloned());
            }
            if let (Some(cc), Ok(mut log)) = (any.downcast_ref::<TransportLayerCc>(), t_log.lock())
            {
                log.push(cc.clone());
            }
            if any.is::<TransportLayerNack>() {
                n_log.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    // Browsers number every packet transport-wide; the default test client does not.
    let client = Client::with_interceptors(false, |r| {
        r.with(Slot::from(100), log)
            .with(Slot::TwccSender, TwccSenderBuilder::new().build())
    })
    .await;
    let publisher = Publisher::negotiate_on(client, |offer| async {
        ph.publish_offer(offer).await.expect("answer")
    })
    .await;
    let frames = 200;
    publisher.send(frames, 30, Duration::from_millis(10)).await;
    // Reports go out every second: wait for one after the last packet.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let stats = sfu.stats().await;
    assert!(
        stats.media_in.uplink >= 2 * frames as u64 - 4,
        "the SFU's own receiver took the media: {:?}",
        stats.media_in
    );
    let reports = reports.lock().expect("log").clone();
    // `send` numbers video from 1000 and audio from 50000.
    for (ssrc, last_seq) in [
        (VIDEO_SSRC, 1000 + frames - 1),
        (AUDIO_SSRC, 50_000 + frames - 1),
    ] {
        let last = reports
            .iter()
            .filter(|r| r.ssrc == ssrc)
            .max_by_key(|r| r.last_sequence_number)
            .unwrap_or_else(|| panic!("no receiver report for {ssrc:#x}"));
        assert_eq!(
            last.last_sequence_number, last_seq,
            "{ssrc:#x}: the report reached the last packet: {last:?}"
        );
        assert_eq!(last.total_lost, 0, "{ssrc:#x}: {last:?}");
    }
    let received: usize = twcc
        .lock()
        .expect("log")
        .iter()
        .map(|cc| cc.recv_deltas.len())
        .sum();
    assert!(
        received >= 2 * frames as usize * 95 / 100,
        "transport-wide-cc feedback acknowledged {received} of {} packets",
        2 * frames
    );
    assert_eq!(
        nacks.load(Ordering::Relaxed),
        0,
        "NACKs for a loss-free stream"
    );
}
