//! The receive-side feedback of a publish connection: what the publisher's congestion control
//! and loss repair hear about the packets the SFU got, whichever way they came in.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rtc::interceptor::{
    AttributedPacket, Interceptor, Packet, StreamInfo, TaggedPacket, TwccReceiverBuilder,
    TwccReceiverInterceptor,
};
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::{
    TransportLayerNack, nack_pairs_from_sequence_numbers,
};
use rtc::sansio::Protocol;
use rtc::shared::TransportContext;
use rtc::shared::error::Error as RtcError;

use super::reception::Reception;

/// How often receiver reports go out (RFC 3550's minimum interval is 5 s; browsers send
/// them every second, and their estimators read loss from them).
const REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// How often missing packets are asked for again.
const NACK_INTERVAL: Duration = Duration::from_millis(100);
/// Report blocks one RTCP receiver report can carry (a 5-bit count).
const BLOCKS_PER_REPORT: usize = 31;

/// A publish connection's receive-side feedback: receiver reports and NACKs from our own
/// per-stream [`Reception`] state, transport-wide-cc feedback from `rtc`'s recorder.
///
/// Recording a packet is a few integer operations on the stream's own state. `rtc`'s report
/// and NACK links each looked the stream up in a SipHash map and moved the whole packet through
/// a queue of their own, and on the uplink's path, one walk per packet received, that cost more
/// than forwarding the packet. The transport-wide-cc link stays `rtc`'s: its feedback encoding
/// is what browsers' bandwidth estimation reads.
pub(crate) struct Feedback {
    streams: Vec<Reception>,
    twcc: TwccReceiverInterceptor,
    /// Our SSRC as the sender of the reports and NACKs.
    ssrc: u32,
    next_report: Option<Instant>,
    next_nack: Option<Instant>,
    out: VecDeque<TaggedPacket>,
    /// Scratch for the NACK sweep, kept for its allocation.
    missing: Vec<u16>,
}

impl Default for Feedback {
    fn default() -> Self {
        Self {
            streams: Vec::new(),
            twcc: TwccReceiverBuilder::new().build(),
            ssrc: crate::peer::random_u32(),
            next_report: None,
            next_nack: None,
            out: VecDeque::new(),
            missing: Vec::new(),
        }
    }
}

impl Feedback {
    /// Records an RTP packet of a bound stream, starting the report and NACK timers with the
    /// first one.
    #[inline]
    fn record(&mut self, header: &rtc::rtp::header::Header, now: Instant) {
        let Some(stream) = self.streams.iter_mut().find(|s| s.ssrc() == header.ssrc) else {
            return;
        };
        stream.record(header.sequence_number, header.timestamp, now);
        let nack = stream.nack();
        self.next_report.get_or_insert(now + REPORT_INTERVAL);
        if nack {
            self.next_nack.get_or_insert(now + NACK_INTERVAL);
        }
    }

    fn queue(&mut self, now: Instant, packets: Vec<Box<dyn rtc::rtcp::Packet>>) {
        self.out.push_back(TaggedPacket {
            now,
            transport: TransportContext::default(),
            message: AttributedPacket::new(Packet::Rtcp(packets)),
        });
    }

    fn send_reports(&mut self, now: Instant) {
        let blocks: Vec<_> = self
            .streams
            .iter_mut()
            .filter_map(|s| s.report(now))
            .collect();
        for chunk in blocks.chunks(BLOCKS_PER_REPORT) {
            let rr = ReceiverReport {
                ssrc: self.ssrc,
                reports: chunk.to_vec(),
                ..Default::default()
            };
            self.queue(now, vec![Box::new(rr)]);
        }
    }

    fn send_nacks(&mut self, now: Instant) {
        for i in 0..self.streams.len() {
            let mut missing = std::mem::take(&mut self.missing);
            missing.clear();
            self.streams[i].missing(&mut missing);
            if !missing.is_empty() {
                let nack = TransportLayerNack {
                    sender_ssrc: self.ssrc,
                    media_ssrc: self.streams[i].ssrc(),
                    nacks: nack_pairs_from_sequence_numbers(&missing),
                };
                self.queue(now, vec![Box::new(nack)]);
            }
            self.missing = missing;
        }
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for Feedback {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = RtcError;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        match &msg.message.packet {
            Packet::Rtp(p) => self.record(&p.header, msg.now),
            Packet::Rtcp(packets) => {
                for sr in packets
                    .iter()
                    .filter_map(|p| p.as_any().downcast_ref::<SenderReport>())
                {
                    if let Some(s) = self.streams.iter_mut().find(|s| s.ssrc() == sr.ssrc) {
                        s.sender_report(sr.ntp_time, msg.now);
                    }
                }
            }
            _ => {}
        }
        self.twcc.handle_read(msg)
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.twcc.poll_read()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.twcc.handle_write(msg)
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.out.pop_front().or_else(|| self.twcc.poll_write())
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), Self::Error> {
        if self.next_report.is_some_and(|t| t <= now) {
            self.send_reports(now);
            self.next_report = Some(now + REPORT_INTERVAL);
        }
        if self.next_nack.is_some_and(|t| t <= now) {
            self.send_nacks(now);
            self.next_nack = Some(now + NACK_INTERVAL);
        }
        self.twcc.handle_timeout(now)
    }

    fn poll_timeout(&mut self) -> Option<Self::Time> {
        [self.next_report, self.next_nack, self.twcc.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    }

    fn close(&mut self) -> Result<(), Self::Error> {
        self.twcc.close()
    }
}

impl Interceptor for Feedback {
    fn bind_local_stream(&mut self, info: &StreamInfo) {
        self.twcc.bind_local_stream(info);
    }

    fn unbind_local_stream(&mut self, info: &StreamInfo) {
        self.twcc.unbind_local_stream(info);
    }

    fn bind_remote_stream(&mut self, info: &StreamInfo) {
        let nack = info
            .rtcp_feedback
            .iter()
            .any(|fb| fb.typ == "nack" && fb.parameter.is_empty());
        self.streams.retain(|s| s.ssrc() != info.ssrc);
        self.streams
            .push(Reception::new(info.ssrc, info.clock_rate, nack));
        self.twcc.bind_remote_stream(info);
    }

    fn unbind_remote_stream(&mut self, info: &StreamInfo) {
        self.streams.retain(|s| s.ssrc() != info.ssrc);
        self.twcc.unbind_remote_stream(info);
    }
}

/// A publish connection's [`Feedback`], shared by the connection and the connection's [`Uplink`].
///
/// The connection holds it as its only interceptor, so everything `rtc` does with a chain still
/// happens: streams are bound and unbound as tracks come and go, the publisher's RTCP (sender
/// reports) is read, the chain's timers run with the connection's, and the feedback it writes
/// leaves encrypted through the connection. The uplink feeds it the media it decrypts itself,
/// so the feedback covers every packet, whichever way it came in.
///
/// [`Uplink`]: super::Uplink
#[derive(Clone, Default)]
pub(crate) struct SharedChain(Arc<Mutex<Feedback>>);

impl SharedChain {
    /// Runs one inbound packet through the chain and returns what comes out (the packet, or
    /// nothing if a link dropped it) with the chain's next deadline, under one lock.
    pub(crate) fn read(&self, msg: TaggedPacket) -> Option<(TaggedPacket, Option<Instant>)> {
        let mut chain = self.0.lock().ok()?;
        chain.handle_read(msg).ok()?;
        let packet = chain.poll_read()?;
        Some((packet, chain.poll_timeout()))
    }

    fn with<R>(&self, f: impl FnOnce(&mut Feedback) -> R) -> Option<R> {
        self.0.lock().ok().map(|mut chain| f(&mut chain))
    }
}

/// A chain whose lock was poisoned by a panic elsewhere reports the error instead of panicking
/// again inside the connection.
fn poisoned() -> RtcError {
    RtcError::Other("shared interceptor chain poisoned".to_owned())
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for SharedChain {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = RtcError;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.with(|c| c.handle_read(msg))
            .unwrap_or_else(|| Err(poisoned()))
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.with(|c| c.poll_read()).flatten()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.with(|c| c.handle_write(msg))
            .unwrap_or_else(|| Err(poisoned()))
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.with(|c| c.poll_write()).flatten()
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), Self::Error> {
        self.with(|c| c.handle_timeout(now))
            .unwrap_or_else(|| Err(poisoned()))
    }

    fn poll_timeout(&mut self) -> Option<Self::Time> {
        self.with(|c| c.poll_timeout()).flatten()
    }

    fn close(&mut self) -> Result<(), Self::Error> {
        self.with(|c| c.close()).unwrap_or_else(|| Err(poisoned()))
    }
}

impl Interceptor for SharedChain {
    fn bind_local_stream(&mut self, info: &StreamInfo) {
        self.with(|c| c.bind_local_stream(info));
    }

    fn unbind_local_stream(&mut self, info: &StreamInfo) {
        self.with(|c| c.unbind_local_stream(info));
    }

    fn bind_remote_stream(&mut self, info: &StreamInfo) {
        self.with(|c| c.bind_remote_stream(info));
    }

    fn unbind_remote_stream(&mut self, info: &StreamInfo) {
        self.with(|c| c.unbind_remote_stream(info));
    }
}

#[cfg(test)]
mod tests {
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
        P: Protocol<TaggedPacket, TaggedPacket, (), Wout = TaggedPacket>,
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
}
