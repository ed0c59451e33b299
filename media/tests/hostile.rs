//! Hostile signalling: offers, answers and candidates mangled many ways must get an error or an
//! answer, never take down the worker that owns the room (and with it every other call there).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use mescon_media::{Pc, Sfu, SfuConfig};
use webrtc::media_stream::track_local::TrackLocal;

/// A small deterministic generator (xorshift64*): the same mutations on every run, so a failure
/// names a reproducible case.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Values a parser is likely to trip on.
const NASTY: &[&str] = &[
    "",
    "0",
    "-1",
    "4294967296",
    "18446744073709551616",
    "99999999999999999999999",
    ":",
    "::::",
    " ",
    "a=",
    "\u{0}",
    "é",
    "m=video",
    "m=audio 0",
    "c=IN IP4",
    "a=rid:",
    "a=simulcast:send",
    "a=ssrc-group:FID",
    "a=extmap:",
    "a=fmtp:",
    "a=rtpmap:96",
    "a=candidate:",
    "a=mid:",
    "a=group:BUNDLE",
];

/// Cuts `s` at a random place (on a character boundary).
fn cut_short(s: &mut String, rng: &mut Rng) {
    let at = rng.below(s.len() + 1);
    let at = (0..=at).rev().find(|c| s.is_char_boundary(*c)).unwrap_or(0);
    s.truncate(at);
}

/// One to three mutations of `sdp`: lines deleted, duplicated, swapped or truncated, tokens
/// replaced by nasty values, garbage lines inserted, or the whole text cut short.
fn mangle(sdp: &str, rng: &mut Rng) -> String {
    let mut lines: Vec<String> = sdp.split("\r\n").map(str::to_owned).collect();
    for _ in 0..1 + rng.below(3) {
        let n = lines.len().max(1);
        let i = rng.below(n);
        match rng.below(8) {
            0 if !lines.is_empty() => {
                lines.remove(i);
            }
            1 if !lines.is_empty() => {
                let l = lines[i].clone();
                lines.insert(i, l);
            }
            2 if lines.len() > 1 => {
                let j = rng.below(lines.len());
                lines.swap(i, j);
            }
            3 if !lines.is_empty() => cut_short(&mut lines[i], rng),
            4 if !lines.is_empty() => {
                let mut tokens: Vec<String> = lines[i]
                    .split([' ', ':', '/', '='])
                    .map(str::to_owned)
                    .collect();
                let t = rng.below(tokens.len());
                tokens[t] = NASTY[rng.below(NASTY.len())].to_owned();
                lines[i] = tokens.join(if rng.below(2) == 0 { " " } else { ":" });
            }
            5 => lines.insert(i, NASTY[rng.below(NASTY.len())].to_owned()),
            6 => {
                let prefix = lines
                    .get(i)
                    .and_then(|l| l.get(..2))
                    .unwrap_or("a=")
                    .to_owned();
                lines.insert(i, format!("{prefix}{}", NASTY[rng.below(NASTY.len())]));
            }
            _ => {
                let mut all = lines.join("\r\n");
                cut_short(&mut all, rng);
                lines = all.split("\r\n").map(str::to_owned).collect();
            }
        }
    }
    lines.join("\r\n")
}

/// Real clients' offers: one audio and one video track, and one video track in three
/// simulcast layers.
async fn real_offers() -> Vec<String> {
    use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
    let plain = Client::new(false).await;
    for (kind, id, ssrc) in [
        (RtpCodecKind::Audio, "audio", AUDIO_SSRC),
        (RtpCodecKind::Video, "video", VIDEO_SSRC),
    ] {
        plain
            .pc
            .add_track(local_track(kind, id, ssrc) as Arc<dyn TrackLocal>)
            .await
            .expect("add track");
    }
    let simulcast = Client::new(false).await;
    simulcast
        .pc
        .add_track(simulcast_track() as Arc<dyn TrackLocal>)
        .await
        .expect("add simulcast track");
    let offers = vec![plain.offer().await, simulcast.offer().await];
    assert!(offers[1].contains("a=simulcast:send"), "{}", offers[1]);
    offers
}

/// Every call into the SFU must come back within this long.
const PATIENCE: Duration = Duration::from_secs(5);

/// Waits for one SFU call, failing the test if it hangs.
async fn within<T>(case: usize, what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, f)
        .await
        .unwrap_or_else(|_| panic!("case {case}: {what} got no answer within {PATIENCE:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mangled_signalling_never_takes_a_worker_down() {
    let mut cfg = SfuConfig::new("127.0.0.1:0".parse().expect("addr"));
    // One worker: a panic anywhere would end every later call with an error.
    cfg.workers = 1;
    let sfu = Sfu::start(cfg).await.expect("start");
    let offers = real_offers().await;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);

    // A connected publisher's renegotiations, mangled, go through the same worker too.
    let (ph, _pev) = sfu.join("room", "pub").await.expect("join");
    let publisher = Publisher::connect(&ph, false).await;

    let (mut answered, mut refused) = (0, 0);
    for i in 0..600 {
        let base = &offers[i % offers.len()];
        let mangled = mangle(base, &mut rng);
        let joined = within(i, "join", sfu.join("room", &format!("p{i}"))).await;
        let (handle, _events) = joined
            .unwrap_or_else(|e| panic!("case {i}: the worker is gone ({e}) after:\n{mangled}"));
        match within(i, "a publish offer", handle.publish_offer(mangled.clone())).await {
            Ok(_) => answered += 1,
            Err(_) => refused += 1,
        }
        // The same text as a subscriber's answer, and its lines as candidates.
        let _ = within(
            i,
            "a subscribe answer",
            handle.subscribe_answer(mangled.clone()),
        )
        .await;
        for line in mangled.lines().filter(|l| l.contains("candidate")).take(2) {
            let _ = within(
                i,
                "a candidate",
                handle.add_candidate(Pc::Publish, line.into()),
            )
            .await;
        }
        let _ = within(i, "leave", handle.leave()).await;
        if i % 10 == 0 {
            let reoffer = mangle(&publisher.client.offer().await, &mut rng);
            let _ = within(i, "a re-offer", ph.publish_offer(reoffer)).await;
        }
    }
    // Both outcomes happened, so the cases reached past the first checks.
    assert!(
        answered > 50 && refused > 50,
        "{answered} answered, {refused} refused"
    );

    // And the worker still runs a real call.
    let (_sh, sub) = join_subscriber(&sfu, "call", "sub").await;
    let (ph, _pev) = sfu.join("call", "pub").await.expect("join");
    let publisher = Publisher::connect(&ph, false).await;
    publisher.send(60, 20, Duration::from_millis(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        sub.seen().len(),
        2,
        "audio and video arrive: {:?}",
        sub.seen().keys()
    );
}

/// One corrupted version of a datagram the client really sent: bytes flipped anywhere (header,
/// payload, authentication tag), cut short, replayed, or replaced by noise of the same
/// demultiplexing class (STUN, DTLS, RTP/RTCP: RFC 7983).
fn corrupt(real: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut d = real.to_vec();
    match rng.below(6) {
        0 | 1 => {
            for _ in 0..1 + rng.below(4) {
                if !d.is_empty() {
                    let i = rng.below(d.len());
                    d[i] ^= 1 << rng.below(8);
                }
            }
        }
        2 => d.truncate(rng.below(d.len() + 1)),
        3 => {} // a replay
        4 => {
            let len = rng.below(1300);
            d = (0..len).map(|_| rng.next() as u8).collect();
            if let Some(first) = d.first_mut() {
                *first = [0u8, 1, 20, 23, 0x80, 0x90][rng.below(6)];
            }
        }
        _ => {
            // Keep an RTP/RTCP header, garble what follows it.
            for b in d.iter_mut().skip(2 + rng.below(12)) {
                *b = rng.next() as u8;
            }
        }
    }
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_datagrams_from_a_connected_peer_are_dropped() {
    let mut cfg = SfuConfig::new("127.0.0.1:0".parse().expect("addr"));
    cfg.workers = 1;
    let sfu = Sfu::start(cfg).await.expect("start");
    let sfu_addr = sfu.udp_addr();
    let (_sh, sub) = join_subscriber(&sfu, "room", "sub").await;
    let (ph, _pev) = sfu.join("room", "pub").await.expect("join");
    let proxy = Proxy::spawn(sfu_addr, |_| Verdict::Pass).await;
    let publisher = Publisher::negotiate(false, |offer| async {
        proxy.rewrite(&ph.publish_offer(offer).await.expect("answer"), sfu_addr)
    })
    .await;
    publisher.send(40, 20, Duration::from_millis(10)).await;

    // Thousands of corrupted datagrams from the publisher's own address, between its packets.
    let mut rng = Rng(0x5eed_0fba_dda7);
    for round in 0..40 {
        publisher.send(5, 20, Duration::from_millis(2)).await;
        let recent: Vec<Vec<u8>> = proxy
            .sent_up
            .lock()
            .map(|log| log.iter().cloned().collect())
            .unwrap_or_default();
        assert!(
            !recent.is_empty(),
            "round {round}: the proxy saw the client's datagrams"
        );
        for _ in 0..100 {
            let real = &recent[rng.below(recent.len())];
            proxy.inject(&corrupt(real, &mut rng)).await;
        }
    }

    // The worker is alive, and the publisher's media still reaches the subscriber, in order.
    within(0, "join", sfu.join("other", "x"))
        .await
        .expect("the worker still takes joins");
    let before: usize = sub.seen().values().map(Vec::len).sum();
    publisher.send(40, 20, Duration::from_millis(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = sub.seen();
    let after: usize = seen.values().map(Vec::len).sum();
    assert!(
        after >= before + 70,
        "media kept flowing: {before} -> {after}"
    );
    for (track, packets) in &seen {
        assert_continuous(track, packets);
    }
    let refused = sfu.stats().await.media_in.refused;
    assert!(
        refused >= 100,
        "the uplink counted what it refused: {refused} of 4000 corrupted"
    );
}

/// Well-formed but hostile feedback from an authenticated subscriber: NACKs for everything,
/// transport-wide-cc reports of packets never sent with arbitrary arrival times, absurd
/// receiver reports, FIR and PLI floods, for a track it receives and for SSRCs it does not.
fn hostile_feedback(media_ssrc: u32, rng: &mut Rng) -> Vec<Box<dyn rtc::rtcp::Packet>> {
    use rtc::rtcp::payload_feedbacks::full_intra_request::{FirEntry, FullIntraRequest};
    use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
    use rtc::rtcp::receiver_report::ReceiverReport;
    use rtc::rtcp::reception_report::ReceptionReport;
    use rtc::rtcp::transport_feedbacks::transport_layer_cc::{
        PacketStatusChunk, RecvDelta, RunLengthChunk, StatusChunkTypeTcc, SymbolTypeTcc,
        TransportLayerCc,
    };
    use rtc::rtcp::transport_feedbacks::transport_layer_nack::{NackPair, TransportLayerNack};
    let ssrc = if rng.below(4) == 0 {
        rng.next() as u32
    } else {
        media_ssrc
    };
    let count = 1 + rng.below(400) as u16;
    vec![
        Box::new(TransportLayerNack {
            sender_ssrc: 1,
            media_ssrc: ssrc,
            nacks: (0..1 + rng.below(100))
                .map(|_| NackPair {
                    packet_id: rng.next() as u16,
                    lost_packets: 0xffff,
                })
                .collect(),
        }),
        Box::new(TransportLayerCc {
            sender_ssrc: 1,
            media_ssrc: ssrc,
            base_sequence_number: rng.next() as u16,
            packet_status_count: count,
            reference_time: rng.next() as u32 & 0x00ff_ffff,
            fb_pkt_count: rng.next() as u8,
            packet_chunks: vec![PacketStatusChunk::RunLengthChunk(RunLengthChunk {
                type_tcc: StatusChunkTypeTcc::RunLengthChunk,
                packet_status_symbol: SymbolTypeTcc::PacketReceivedSmallDelta,
                run_length: count,
            })],
            recv_deltas: (0..count)
                .map(|_| RecvDelta {
                    type_tcc_packet: SymbolTypeTcc::PacketReceivedSmallDelta,
                    delta: rng.below(256) as i64 * 250,
                })
                .collect(),
        }),
        Box::new(ReceiverReport {
            ssrc: 1,
            reports: vec![ReceptionReport {
                ssrc,
                fraction_lost: rng.next() as u8,
                total_lost: rng.next() as u32 & 0x00ff_ffff,
                last_sequence_number: rng.next() as u32,
                jitter: rng.next() as u32,
                last_sender_report: rng.next() as u32,
                delay: rng.next() as u32,
            }],
            ..Default::default()
        }),
        Box::new(FullIntraRequest {
            sender_ssrc: 1,
            media_ssrc: ssrc,
            fir: vec![FirEntry {
                ssrc,
                sequence_number: rng.next() as u8,
            }],
        }),
        Box::new(PictureLossIndication {
            sender_ssrc: 1,
            media_ssrc: ssrc,
        }),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_feedback_from_a_subscriber_harms_no_one_else() {
    let mut cfg = SfuConfig::new("127.0.0.1:0".parse().expect("addr"));
    cfg.workers = 1;
    let sfu = Sfu::start(cfg).await.expect("start");
    let (_hh, hostile) = join_subscriber(&sfu, "room", "hostile").await;
    let (_gh, good) = join_subscriber(&sfu, "room", "good").await;
    let (ph, _pev) = sfu.join("room", "pub").await.expect("join");
    let publisher = Publisher::connect(&ph, false).await;
    publisher.send(40, 10, Duration::from_millis(10)).await;
    let tracks = hostile.tracks.lock().expect("tracks").clone();
    assert_eq!(
        tracks.len(),
        2,
        "the hostile subscriber receives both tracks"
    );
    let mut ssrcs = Vec::new();
    for t in &tracks {
        ssrcs.push(t.ssrcs().await.first().copied().expect("ssrc"));
    }
    let before = sfu.stats().await.forward_delay;
    let good_before = good.seen().values().map(Vec::len).sum::<usize>();

    let mut rng = Rng(0xfeed_bacc);
    let mut written = 0;
    for round in 0..60 {
        let t = &tracks[round % tracks.len()];
        for _ in 0..5 {
            let packets = hostile_feedback(ssrcs[round % ssrcs.len()], &mut rng);
            written += t.write_rtcp(packets).await.is_ok() as usize;
        }
        publisher.send(1, 10, Duration::from_millis(10)).await;
    }
    assert_eq!(
        written, 300,
        "every hostile compound packet left the subscriber"
    );
    publisher.send(40, 10, Duration::from_millis(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    within(0, "join", sfu.join("other", "x"))
        .await
        .expect("the worker still takes joins");
    let seen = good.seen();
    let good_after: usize = seen.values().map(Vec::len).sum();
    assert!(
        good_after >= good_before + 2 * 90,
        "the other subscriber kept receiving: {good_before} -> {good_after}"
    );
    for (track, packets) in &seen {
        assert_continuous(track, packets);
    }
    // Answering the attack (bounded repairs, throttled keyframe requests) did not stall the
    // worker: what it forwarded meanwhile left promptly.
    let during = sfu.stats().await.forward_delay.since(&before);
    let p99 = during.quantile(0.99).expect("forwarded during the attack");
    assert!(
        p99 < Duration::from_millis(50),
        "p99 {p99:?} during the attack"
    );
}
