//! Tests of the publish connection's feedback: against `rtc`'s own links where both define
//! the same figures, and the timers and streams of ours.

use super::*;
use rtc::interceptor::{NackGeneratorBuilder, RTCPFeedback, ReceiverReportBuilder};
use rtc::rtcp::reception_report::ReceptionReport;
use rtc::rtp;

fn stream(ssrc: u32, clock_rate: u32, nack: bool) -> StreamInfo {
    StreamInfo {
        ssrc,
        clock_rate,
        rtcp_feedback: nack
            .then(|| RTCPFeedback {
                typ: "nack".to_owned(),
                parameter: String::new(),
            })
            .into_iter()
            .collect(),
        ..Default::default()
    }
}

fn rtp(ssrc: u32, seq: u16, timestamp: u32, now: Instant) -> TaggedPacket {
    TaggedPacket {
        now,
        transport: TransportContext::default(),
        message: AttributedPacket::new(Packet::Rtp(rtp::Packet {
            header: rtp::header::Header {
                version: 2,
                ssrc,
                sequence_number: seq,
                timestamp,
                ..Default::default()
            },
            payload: bytes::Bytes::from_static(&[1, 2, 3]),
        })),
    }
}

fn sender_report(ssrc: u32, ntp_time: u64, now: Instant) -> TaggedPacket {
    TaggedPacket {
        now,
        transport: TransportContext::default(),
        message: AttributedPacket::new(Packet::Rtcp(vec![Box::new(SenderReport {
            ssrc,
            ntp_time,
            ..Default::default()
        })])),
    }
}

/// Every RTCP packet a link writes, flattened.
fn written<P>(link: &mut P) -> Vec<Box<dyn rtc::rtcp::Packet>>
where
    P: Protocol<TaggedPacket, TaggedPacket, (), Wout = TaggedPacket> + ?Sized,
{
    let mut out = Vec::new();
    while let Some(m) = link.poll_write() {
        if let Packet::Rtcp(p) = m.message.packet {
            out.extend(p);
        }
    }
    out
}

fn blocks(packets: &[Box<dyn rtc::rtcp::Packet>]) -> Vec<ReceptionReport> {
    packets
        .iter()
        .filter_map(|p| p.as_any().downcast_ref::<ReceiverReport>())
        .flat_map(|rr| rr.reports.clone())
        .collect()
}

fn nacked(packets: &[Box<dyn rtc::rtcp::Packet>]) -> Vec<(u32, Vec<u16>)> {
    packets
        .iter()
        .filter_map(|p| p.as_any().downcast_ref::<TransportLayerNack>())
        .map(|n| {
            let seqs = n.nacks.iter().flat_map(|p| p.packet_list()).collect();
            (n.media_ssrc, seqs)
        })
        .collect()
}

/// Feeds the same packets to ours and to `rtc`'s report and NACK links: where the two
/// define a figure the same way (an in-order stream with losses, across a wrap), the
/// reports and NACKs must agree field for field.
#[test]
fn reports_and_nacks_match_rtcs_links() {
    let t0 = Instant::now();
    let info = stream(0x1111, 90_000, true);
    let mut ours = Feedback::default();
    let mut reports = ReceiverReportBuilder::new().build();
    let mut nacks = NackGeneratorBuilder::new().build();
    ours.bind_remote_stream(&info);
    reports.bind_remote_stream(&info);
    nacks.bind_remote_stream(&info);
    let lost = [65534u16, 65535, 7, 40];
    let mut n = 0u32;
    for seq in (65500u16..=65535).chain(0..60) {
        n += 1;
        if lost.contains(&seq) {
            continue;
        }
        // Arrivals wobble by a millisecond around a 30 ms frame rhythm.
        let now = t0 + Duration::from_millis(n as u64 * 30 + (n % 3) as u64);
        let ts = n.wrapping_mul(2700);
        let msg = || rtp(0x1111, seq, ts, now);
        ours.handle_read(msg()).expect("ours reads");
        assert!(ours.poll_read().is_some(), "the packet passes on");
        reports.handle_read(msg()).expect("rtc reads");
        nacks.handle_read(msg()).expect("rtc reads");
    }
    let sr = t0 + Duration::from_millis(3000);
    let ntp = 0xe000_1234_5678_0000u64;
    ours.handle_read(sender_report(0x1111, ntp, sr))
        .expect("SR");
    reports
        .handle_read(sender_report(0x1111, ntp, sr))
        .expect("SR");

    let tick = t0 + Duration::from_millis(3500);
    for link in [
        &mut ours as &mut dyn Interceptor,
        &mut reports as &mut dyn Interceptor,
        &mut nacks as &mut dyn Interceptor,
    ] {
        assert!(link.poll_timeout().is_some_and(|t| t <= tick), "armed");
        link.handle_timeout(tick).expect("timers");
    }
    let ours_out = written(&mut ours);
    let theirs = blocks(&written(&mut reports));
    let mine = blocks(&ours_out);
    assert_eq!(mine.len(), 1, "{ours_out:?}");
    assert_eq!(theirs.len(), 1);
    let (a, b) = (&mine[0], &theirs[0]);
    assert_eq!(a.ssrc, b.ssrc);
    assert_eq!(a.last_sequence_number, b.last_sequence_number);
    assert_eq!(a.last_sequence_number, (1 << 16) | 59);
    assert_eq!(a.total_lost, b.total_lost);
    assert_eq!(a.total_lost, lost.len() as u32);
    assert_eq!(a.fraction_lost, b.fraction_lost);
    assert_eq!(a.last_sender_report, b.last_sender_report);
    assert_eq!(a.last_sender_report, 0x1234_5678);
    assert_eq!(a.delay, b.delay);
    assert_eq!(a.delay, 32768, "half a second after the SR");
    assert!(
        a.jitter.abs_diff(b.jitter) <= 1,
        "{} vs {}",
        a.jitter,
        b.jitter
    );
    assert!(a.jitter > 0, "arrivals wobbled");
    assert_eq!(nacked(&ours_out), nacked(&written(&mut nacks)));
    assert_eq!(nacked(&ours_out), vec![(0x1111, lost.to_vec())]);
}

#[test]
fn timers_streams_and_what_is_asked_for() {
    let t0 = Instant::now();
    let mut fb = Feedback::default();
    fb.bind_remote_stream(&stream(1, 90_000, true));
    fb.bind_remote_stream(&stream(2, 48_000, false));
    assert_eq!(fb.poll_timeout(), None, "no timers before media");
    // A stream not bound is passed on but not reported.
    for (ssrc, seq) in [(1, 10), (1, 12), (2, 5), (2, 7), (3, 1), (3, 9)] {
        fb.handle_read(rtp(ssrc, seq, 0, t0)).expect("read");
        assert!(fb.poll_read().is_some());
    }
    assert_eq!(fb.poll_timeout(), Some(t0 + NACK_INTERVAL));
    fb.handle_timeout(t0 + NACK_INTERVAL).expect("timers");
    let out = written(&mut fb);
    assert_eq!(nacked(&out), vec![(1, vec![11])], "only the NACK stream");
    assert!(blocks(&out).is_empty(), "reports wait for their interval");
    fb.handle_timeout(t0 + REPORT_INTERVAL).expect("timers");
    let rr: Vec<u32> = blocks(&written(&mut fb)).iter().map(|b| b.ssrc).collect();
    assert_eq!(rr, vec![1, 2], "one report for both streams");
    fb.unbind_remote_stream(&stream(1, 90_000, true));
    fb.handle_timeout(t0 + REPORT_INTERVAL * 2).expect("timers");
    let rr: Vec<u32> = blocks(&written(&mut fb)).iter().map(|b| b.ssrc).collect();
    assert_eq!(rr, vec![2]);
    // What the connection writes passes through.
    let pli = TaggedPacket {
        now: t0,
        transport: TransportContext::default(),
        message: AttributedPacket::new(Packet::Rtcp(vec![Box::new(
            rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication {
                sender_ssrc: 9,
                media_ssrc: 2,
            },
        )])),
    };
    fb.handle_write(pli).expect("write");
    assert_eq!(written(&mut fb).len(), 1);
}

/// The same transport-wide numbered arrivals (loss, reordering, duplicates, a wrap) go to
/// our recorder and to `rtc`'s transport-wide-cc link, whose feedback is what browsers
/// have been reading from the SFU: both report the same packets received, at the same
/// times to 250 µs, and none received that the other reports lost.
#[test]
fn transport_wide_feedback_agrees_with_rtcs() {
    use rtc::interceptor::{RTPHeaderExtension, TwccReceiverBuilder};
    use rtc::rtcp::transport_feedbacks::transport_layer_cc::TransportLayerCc;
    use std::collections::HashMap;

    let info = StreamInfo {
        ssrc: 0x2222,
        clock_rate: 90_000,
        rtp_header_extensions: vec![RTPHeaderExtension {
            uri: rtc::sdp::extmap::TRANSPORT_CC_URI.to_owned(),
            id: 5,
        }],
        ..Default::default()
    };
    let mut ours = Feedback::default();
    let mut theirs = TwccReceiverBuilder::new().build();
    ours.bind_remote_stream(&info);
    theirs.bind_remote_stream(&info);
    let arrivals = crate::uplink::TestRng(0x853c_49e6_748f_ea9bu64).arrivals(65_000, 3_000, 700);
    let t0 = Instant::now();
    let (mut mine, mut rtcs) = (HashMap::new(), HashMap::new());
    let mut collect = |ours: &mut Feedback, theirs: &mut dyn Interceptor| {
        for (link, map) in [
            (ours as &mut dyn Interceptor, &mut mine),
            (theirs, &mut rtcs),
        ] {
            for p in written(link) {
                if let Some(cc) = p.as_any().downcast_ref::<TransportLayerCc>() {
                    map.extend(super::super::twcc::decode(cc));
                }
            }
        }
    };
    for (at, seq) in &arrivals {
        let now = t0 + Duration::from_micros(*at);
        for link in [
            &mut ours as &mut dyn Interceptor,
            &mut theirs as &mut dyn Interceptor,
        ] {
            if link.poll_timeout().is_some_and(|t| t <= now) {
                link.handle_timeout(now).expect("timers");
            }
        }
        collect(&mut ours, &mut theirs);
        let msg = || {
            let mut msg = rtp(0x2222, *seq, 0, now);
            if let Packet::Rtp(p) = &mut msg.message.packet {
                p.header
                    .set_extension(5, bytes::Bytes::copy_from_slice(&seq.to_be_bytes()))
                    .expect("extension");
            }
            msg
        };
        ours.handle_read(msg()).expect("ours");
        theirs.handle_read(msg()).expect("rtc's");
        while ours.poll_read().is_some() {}
        while theirs.poll_read().is_some() {}
    }
    let end = t0 + Duration::from_secs(10);
    ours.handle_timeout(end).expect("timers");
    theirs.handle_timeout(end).expect("timers");
    collect(&mut ours, &mut theirs);
    assert!(rtcs.len() > 2_500, "rtc reported {} numbers", rtcs.len());
    for (seq, theirs) in &rtcs {
        let mine = mine.get(seq).copied().flatten();
        match (mine, theirs) {
            (Some(a), Some(b)) => assert!((a - b).abs() <= 250, "{seq}: {a} vs {b}"),
            (None, None) => {}
            other => panic!("{seq}: ours, rtc's: {other:?}"),
        }
    }
    let received = mine.values().filter(|v| v.is_some()).count();
    assert_eq!(received, rtcs.values().filter(|v| v.is_some()).count());
}

#[test]
fn transport_wide_feedback_goes_early_when_the_recorder_fills() {
    let t0 = Instant::now();
    let mut fb = Feedback::default();
    let mut info = stream(1, 90_000, false);
    info.rtp_header_extensions = vec![rtc::interceptor::RTPHeaderExtension {
        uri: rtc::sdp::extmap::TRANSPORT_CC_URI.to_owned(),
        id: 3,
    }];
    fb.bind_remote_stream(&info);
    let mut deadlines = Vec::new();
    for seq in 0..200u16 {
        let now = t0 + Duration::from_micros(seq as u64 * 50);
        let mut msg = rtp(1, seq, 0, now);
        if let Packet::Rtp(p) = &mut msg.message.packet {
            let ext = bytes::Bytes::copy_from_slice(&seq.to_be_bytes());
            p.header.set_extension(3, ext).expect("extension");
        }
        fb.handle_read(msg).expect("read");
        deadlines.push(fb.poll_timeout());
    }
    assert_eq!(
        deadlines[0],
        Some(t0 + TWCC_INTERVAL),
        "the interval from the first packet"
    );
    // 200 packets in 10 ms: the recorder fills to half long before the interval is up.
    let early = t0 + Duration::from_micros(128 * 50);
    assert_eq!(deadlines[128], Some(early));
    fb.handle_timeout(early).expect("timers");
    let sent = written(&mut fb);
    assert!(
        sent.iter()
            .any(|p| p
                .as_any()
                .is::<rtc::rtcp::transport_feedbacks::transport_layer_cc::TransportLayerCc>()),
        "{sent:?}"
    );
}
