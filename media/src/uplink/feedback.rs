//! The receive-side feedback of a publish connection: what the publisher's congestion control
//! and loss repair hear about the packets the SFU got, whichever way they came in.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use rtc::interceptor::{
    Interceptor, NackGeneratorBuilder, NackGeneratorInterceptor, ReceiverReportBuilder,
    ReceiverReportInterceptor, StreamInfo, TaggedPacket, TwccReceiverBuilder,
    TwccReceiverInterceptor,
};
use rtc::sansio::Protocol;
use rtc::shared::error::Error as RtcError;

/// `rtc`'s NACK generator, transport-wide-cc recorder and receiver reports, composed in the order
/// `rtc`'s slots give them (7 000, 8 000, 10 000: wire-most first when reading, last when writing).
///
/// Composed here rather than by `rtc`'s `Registry`: its chain hands each packet along through a
/// queue per link and a fresh queue per walk, which on the uplink's path, one walk per packet
/// received, cost as much as the three links' own work.
pub(crate) struct Feedback {
    nack: NackGeneratorInterceptor,
    twcc: TwccReceiverInterceptor,
    reports: ReceiverReportInterceptor,
}

impl Default for Feedback {
    fn default() -> Self {
        Self {
            nack: NackGeneratorBuilder::new().build(),
            twcc: TwccReceiverBuilder::new().build(),
            reports: ReceiverReportBuilder::new().build(),
        }
    }
}

impl Feedback {
    /// The links, wire-most first, for what is not on the per-packet path.
    fn links(&mut self) -> [&mut dyn Interceptor; 3] {
        [&mut self.nack, &mut self.twcc, &mut self.reports]
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for Feedback {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = RtcError;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.nack.handle_read(msg)?;
        while let Some(m) = self.nack.poll_read() {
            self.twcc.handle_read(m)?;
        }
        while let Some(m) = self.twcc.poll_read() {
            self.reports.handle_read(m)?;
        }
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.reports.poll_read()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.reports.handle_write(msg)
    }

    /// What a link writes passes the links nearer the wire, as in `rtc`'s chain.
    fn poll_write(&mut self) -> Option<Self::Wout> {
        loop {
            if let Some(m) = self.nack.poll_write() {
                return Some(m);
            }
            if let Some(m) = self.twcc.poll_write() {
                let _ = self.nack.handle_write(m);
                continue;
            }
            let m = self.reports.poll_write()?;
            let _ = self.twcc.handle_write(m);
        }
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), Self::Error> {
        // Each link's timers run even if another's fail.
        let results = self.links().map(|l| l.handle_timeout(now));
        results.into_iter().collect()
    }

    fn poll_timeout(&mut self) -> Option<Self::Time> {
        self.links()
            .into_iter()
            .filter_map(|l| l.poll_timeout())
            .min()
    }

    fn close(&mut self) -> Result<(), Self::Error> {
        let results = self.links().map(|l| l.close());
        results.into_iter().collect()
    }
}

impl Interceptor for Feedback {
    fn bind_local_stream(&mut self, info: &StreamInfo) {
        self.links()
            .into_iter()
            .for_each(|l| l.bind_local_stream(info));
    }

    fn unbind_local_stream(&mut self, info: &StreamInfo) {
        self.links()
            .into_iter()
            .for_each(|l| l.unbind_local_stream(info));
    }

    fn bind_remote_stream(&mut self, info: &StreamInfo) {
        self.links()
            .into_iter()
            .for_each(|l| l.bind_remote_stream(info));
    }

    fn unbind_remote_stream(&mut self, info: &StreamInfo) {
        self.links()
            .into_iter()
            .for_each(|l| l.unbind_remote_stream(info));
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
