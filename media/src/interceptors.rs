//! Our own links in each connection's interceptor chain: what the `rtc` defaults do not do for
//! an SFU. Both act on inbound packets only; [`ReadLink`] passes everything else through.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rtc::interceptor::{Attribute, Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::transport_feedbacks::transport_layer_cc::TransportLayerCc;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::sansio::Protocol;
use rtc::shared::error::Error as RtcError;

use crate::rtp::rrid::{RridRepair, Verdict};

/// What a read-side link does to each inbound packet.
pub(crate) trait ReadSide: Send + Sync {
    /// Looks at (and may change) one inbound packet; `false` drops it.
    fn on_read(&mut self, msg: &mut TaggedPacket) -> bool;
    /// A remote stream was bound (its SSRC, payload type and negotiated extensions are known).
    fn on_bind_remote(&mut self, _info: &StreamInfo) {}
    /// A remote stream went away.
    fn on_unbind_remote(&mut self, _info: &StreamInfo) {}
}

/// An interceptor made of a [`ReadSide`]; writes and timers pass straight through.
#[derive(Default)]
pub(crate) struct ReadLink<T> {
    side: T,
    read_queue: VecDeque<TaggedPacket>,
    write_queue: VecDeque<TaggedPacket>,
}

impl<T: ReadSide> ReadLink<T> {
    pub(crate) fn new(side: T) -> Self {
        Self {
            side,
            read_queue: VecDeque::new(),
            write_queue: VecDeque::new(),
        }
    }
}

impl<T: ReadSide> Protocol<TaggedPacket, TaggedPacket, ()> for ReadLink<T> {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = RtcError;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if self.side.on_read(&mut msg) {
            self.read_queue.push_back(msg);
        }
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read_queue.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write_queue.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write_queue.pop_front()
    }

    fn handle_timeout(&mut self, _now: Instant) -> Result<(), Self::Error> {
        Ok(())
    }

    fn poll_timeout(&mut self) -> Option<Self::Time> {
        None
    }
}

impl<T: ReadSide> Interceptor for ReadLink<T> {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}

    fn bind_remote_stream(&mut self, info: &StreamInfo) {
        self.side.on_bind_remote(info);
    }

    fn unbind_remote_stream(&mut self, info: &StreamInfo) {
        self.side.on_unbind_remote(info);
    }
}

/// TWCC feedback a subscriber connection received, waiting for the room to feed it to that
/// connection's estimator (the chain runs inside the peer connection, the estimator beside it).
pub(crate) type TwccInbox = Arc<Mutex<Vec<TransportLayerCc>>>;

/// Feedback reports kept at most between two drains: a burst beyond this is stale anyway.
const MAX_PENDING_FEEDBACK: usize = 64;

/// Lets inbound PLI/FIR and NACK through to the application, marked, not consumed: the SFU
/// relays keyframe requests to publishers and answers NACKs from its shared packet cache.
/// TWCC feedback is taken aside into the connection's inbox: `rtc` hands RTCP to the
/// application only per track, and transport-wide feedback belongs to none.
pub(crate) struct FeedbackTap {
    twcc: TwccInbox,
}

impl FeedbackTap {
    pub(crate) fn new(twcc: TwccInbox) -> Self {
        Self { twcc }
    }
}

impl ReadSide for FeedbackTap {
    fn on_read(&mut self, msg: &mut TaggedPacket) -> bool {
        let Packet::Rtcp(packets) = &msg.message.packet else {
            return true;
        };
        for fb in packets
            .iter()
            .filter_map(|p| p.as_any().downcast_ref::<TransportLayerCc>())
        {
            if let Ok(mut inbox) = self.twcc.lock()
                && inbox.len() < MAX_PENDING_FEEDBACK
            {
                inbox.push(fb.clone());
            }
        }
        if packets.iter().any(|p| {
            let any = p.as_any();
            any.is::<PictureLossIndication>()
                || any.is::<FullIntraRequest>()
                || any.is::<TransportLayerNack>()
        }) {
            msg.message.add(Attribute::DeliverToApplication);
        }
        true
    }
}

/// Restores simulcast retransmissions (RTX named by RRID) into the packets they repair, wire-most
/// on the read side so the NACK generator and reports see the repair as the packet it is.
#[derive(Default)]
pub(crate) struct RridRtxUnwrap(RridRepair);

impl ReadSide for RridRtxUnwrap {
    fn on_read(&mut self, msg: &mut TaggedPacket) -> bool {
        match &mut msg.message.packet {
            Packet::Rtp(packet) => self.0.unwrap(packet) == Verdict::Keep,
            _ => true,
        }
    }

    fn on_bind_remote(&mut self, info: &StreamInfo) {
        self.0.learn_extensions(
            info.rtp_header_extensions
                .iter()
                .map(|e| (e.uri.as_str(), e.id)),
        );
    }

    fn on_unbind_remote(&mut self, info: &StreamInfo) {
        self.0.forget(info.ssrc);
    }
}
