//! The receive-side feedback of a publish connection: what the publisher's congestion control
//! and loss repair hear about the packets the SFU got, whichever way they came in.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rtc::interceptor::{AttributedPacket, Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::{
    TransportLayerNack, nack_pairs_from_sequence_numbers,
};
use rtc::sansio::Protocol;
use rtc::shared::TransportContext;
use rtc::shared::error::Error as RtcError;

use super::reception::Reception;
use super::twcc::TwccRecorder;

/// How often receiver reports go out (RFC 3550's minimum interval is 5 s; browsers send
/// them every second, and their estimators read loss from them).
const REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// How often missing packets are asked for again.
const NACK_INTERVAL: Duration = Duration::from_millis(100);
/// How often transport-wide-cc feedback goes out (libwebrtc's receivers: every 100 ms, more
/// often at high rates; the recorder asks for an early one when its window fills).
const TWCC_INTERVAL: Duration = Duration::from_millis(100);
/// Report blocks one RTCP receiver report can carry (a 5-bit count).
const BLOCKS_PER_REPORT: usize = 31;

/// A publish connection's receive-side feedback: receiver reports and NACKs from our own
/// per-stream [`Reception`] state, transport-wide-cc feedback from our [`TwccRecorder`].
///
/// Recording a packet is a few integer operations on state the connection owns, with the
/// packet left where it is. `rtc`'s three links each looked the stream up in a SipHash map and
/// moved the whole packet through a queue of their own, and on the uplink's path, one walk per
/// packet received, that cost more than forwarding the packet.
pub(crate) struct Feedback {
    streams: Vec<Reception>,
    twcc: TwccRecorder,
    /// The transport-wide-cc header extension's negotiated id.
    twcc_ext: Option<u8>,
    next_twcc: Option<Instant>,
    /// What the connection reads, passed on (this link keeps nothing of it).
    read: VecDeque<TaggedPacket>,
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
        let ssrc = crate::peer::random_u32();
        Self {
            streams: Vec::new(),
            twcc: TwccRecorder::new(ssrc),
            twcc_ext: None,
            next_twcc: None,
            read: VecDeque::new(),
            ssrc,
            next_report: None,
            next_nack: None,
            out: VecDeque::new(),
            missing: Vec::new(),
        }
    }
}

impl Feedback {
    /// Records an RTP packet: its transport-wide number whatever its stream (probes too), and
    /// its stream's reception if the stream is bound; timers start with the first.
    #[inline]
    pub(super) fn record(&mut self, header: &rtc::rtp::header::Header, now: Instant) {
        if let Some(seq) = self
            .twcc_ext
            .and_then(|id| header.get_extension(id))
            .and_then(|e| Some(u16::from_be_bytes([*e.first()?, *e.get(1)?])))
        {
            if self.twcc.record(seq, header.ssrc, now) {
                // Due now (or already): the timer sends it, on whichever path the packet came.
                self.next_twcc = Some(self.next_twcc.map_or(now, |t| t.min(now)));
            }
            self.next_twcc.get_or_insert(now + TWCC_INTERVAL);
        }
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

    fn send_twcc(&mut self, now: Instant) {
        for fb in self.twcc.feedback() {
            self.queue(now, vec![Box::new(fb)]);
        }
    }

    fn send_nacks(&mut self, now: Instant) {
        let mut missing = std::mem::take(&mut self.missing);
        for i in 0..self.streams.len() {
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
        }
        self.missing = missing;
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
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.out.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.out.pop_front()
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
        if self.next_twcc.is_some_and(|t| t <= now) {
            self.send_twcc(now);
            self.next_twcc = Some(now + TWCC_INTERVAL);
        }
        Ok(())
    }

    fn poll_timeout(&mut self) -> Option<Self::Time> {
        [self.next_report, self.next_nack, self.next_twcc]
            .into_iter()
            .flatten()
            .min()
    }

    fn close(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

impl Interceptor for Feedback {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}

    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}

    fn bind_remote_stream(&mut self, info: &StreamInfo) {
        let nack = info
            .rtcp_feedback
            .iter()
            .any(|fb| fb.typ == "nack" && fb.parameter.is_empty());
        self.streams.retain(|s| s.ssrc() != info.ssrc);
        self.streams
            .push(Reception::new(info.ssrc, info.clock_rate, nack));
        // BUNDLE makes every m-section one RTP session, so the id is the same for all of a
        // connection's streams; the newest binding is also the newest negotiation.
        if let Some(ext) = info
            .rtp_header_extensions
            .iter()
            .find(|e| e.uri == rtc::sdp::extmap::TRANSPORT_CC_URI)
        {
            self.twcc_ext = u8::try_from(ext.id).ok().filter(|id| *id != 0);
        }
    }

    fn unbind_remote_stream(&mut self, info: &StreamInfo) {
        self.streams.retain(|s| s.ssrc() != info.ssrc);
        // With no stream left, no negotiated id is known to hold.
        if self.streams.is_empty() {
            self.twcc_ext = None;
        }
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
    /// Records a media packet the uplink read, and returns the feedback's next deadline (a
    /// stream's first packet starts its timers), under one lock; `None` if the lock is
    /// poisoned.
    pub(crate) fn record(
        &self,
        header: &rtc::rtp::header::Header,
        now: Instant,
    ) -> Option<Option<Instant>> {
        let mut chain = self.0.lock().ok()?;
        chain.record(header, now);
        Some(chain.poll_timeout())
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
mod tests;
