//! [`ReadTap`]: an interceptor for a test client that lets everything through and shows the
//! test each inbound packet (what the SFU sent it, decrypted).

use std::collections::VecDeque;
use std::time::Instant;

use rtc::interceptor::{Interceptor, StreamInfo, TaggedPacket};
use rtc::sansio::Protocol;
use rtc::shared::error::Error as RtcError;

/// Passes packets both ways unchanged, calling `F` on each inbound one.
pub struct ReadTap<F> {
    on_read: F,
    reads: VecDeque<TaggedPacket>,
    writes: VecDeque<TaggedPacket>,
}

impl<F: FnMut(&TaggedPacket) + Send + Sync> ReadTap<F> {
    pub fn new(on_read: F) -> Self {
        Self {
            on_read,
            reads: VecDeque::new(),
            writes: VecDeque::new(),
        }
    }
}

impl<F: FnMut(&TaggedPacket) + Send + Sync> Protocol<TaggedPacket, TaggedPacket, ()>
    for ReadTap<F>
{
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = RtcError;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        (self.on_read)(&msg);
        self.reads.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.reads.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.writes.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.writes.pop_front()
    }

    fn handle_timeout(&mut self, _now: Instant) -> Result<(), Self::Error> {
        Ok(())
    }

    fn poll_timeout(&mut self) -> Option<Self::Time> {
        None
    }
}

impl<F: FnMut(&TaggedPacket) + Send + Sync> Interceptor for ReadTap<F> {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}
