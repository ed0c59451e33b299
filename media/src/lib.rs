//! Mescon's selective forwarding unit.
//!
//! The SFU drives webrtc-rs's sans-I/O core (`rtc`) from its own tokio tasks: one UDP port for
//! every peer (routed by STUN ufrag, then remote address; on Linux one `SO_REUSEPORT` socket
//! per core, each peer's datagrams always on the same one), an optional passive ICE-TCP port,
//! and worker tasks that each own whole rooms so the forwarding path takes no locks. It knows
//! nothing of users, HTTP or storage: the application joins opaque participant ids into opaque
//! room ids and carries SDP between the SFU and the client.
//!
//! # Signaling
//!
//! Each participant has two peer connections, as LiveKit does, so each is negotiated in one
//! direction only and offers never collide:
//!
//! 1. `let (handle, mut events) = sfu.join(room, participant).await?;`
//! 2. **Publish**: the client creates a connection with its send-only tracks and offers it;
//!    `handle.publish_offer(offer_sdp).await?` returns the answer. Adding or removing tracks (or
//!    restarting ICE) is a new offer through the same call.
//! 3. **Subscribe**: whenever other participants' tracks come or go, the SFU emits
//!    [`Event::SubscribeOffer`]; the client applies it to its receive connection, answers, and
//!    the application passes the answer to `handle.subscribe_answer(sdp)`. Offers are never
//!    overlapped: changes during an outstanding offer produce one new offer after the answer.
//!    Each subscribed track's stream id is the publisher's participant id and its track id is
//!    `publisher:publisher_track_id`.
//! 4. **Candidates**: the SFU is ICE-lite and puts all its candidates (UDP on the shared port,
//!    passive TCP on the ICE-TCP port, for every advertised IP) in its SDP, so there is no local
//!    trickle. Remote candidates may be trickled with `handle.add_candidate(pc, line)`.
//! 5. [`Event::Connected`] / [`Event::Failed`] report each connection. A failed connection
//!    (ICE failure, DTLS timeout, or not connected within the configured timeout) removes the
//!    participant; the client joins again.
//! 6. **Simulcast**: publish with up to three RIDs (`q`/`h`/`f`, `0`/`1`/`2` or
//!    `low`/`mid`/`high` rank low to high; other names rank in order of arrival). Each subscriber gets one layer, chosen every 250 ms from its
//!    send-side bandwidth estimate (GCC over TWCC) split across its video tracks, capped by
//!    `handle.set_max_layer(n)` (the size it displays video at), by
//!    [`Limits::max_subscriber_bitrate`] and by its equal share of [`Limits::max_room_bitrate`];
//!    switches happen at a keyframe of the new layer (one
//!    is requested) with continuous sequence numbers and timestamps. Publishers receive
//!    [`Event::LayersNeeded`] so the client can pause layers nobody receives.
//! 7. [`Event::ActiveSpeaker`] goes to everyone when the loudest participant (from the RFC 6464
//!    audio-level header extension, which the SFU negotiates) changes.
//! 8. `handle.leave()` frees everything; the room closes with its last participant.
//!
//! Keyframe requests (PLI/FIR) from subscribers reach the publisher at most once per track
//! per 500 ms. Subscribers' NACKs are answered with RTX from one packet cache per published
//! layer (shared by all subscribers); a packet leaves it once the transport-wide-cc feedback
//! of every subscriber it was sent to confirmed it arrived, or when it is too old to be asked
//! for, so the cache holds what is in flight and what was lost. Publishers' losses are NACKed, and their answers are
//! taken on SSRC-declared RTX streams and on browsers' simulcast RTX streams named only by
//! RRID. Sender and receiver reports run on both connections.
//!
//! # The forwarding path
//!
//! Media to subscribers does not walk `rtc`'s write pipeline: each subscribe connection's
//! `Downlink` writes the rewritten packet straight into the outgoing datagram (header, TWCC
//! extension, payload), encrypts it in place with our own SRTP sender, and queues it for
//! `sendmmsg`. The SRTP keys come from the connection's DTLS-SRTP through a crypto provider
//! that watches `rtc` derive them ([`srtp::KeyCapture`]); both SRTP profiles we offer
//! (AEAD_AES_128_GCM preferred, AES_CM_128_HMAC_SHA1_80) are implemented and checked byte for
//! byte against `rtc`'s own. The send-side estimate (GCC over TWCC), the sender reports and
//! the route (the ICE-selected pair, learnt from the connection's own datagrams) are kept
//! beside the connection; RTCP, ICE and DTLS still go through it.
//!
//! Media from publishers does not walk `rtc`'s read pipeline either, once a stream has shown
//! itself: the connection delivers each stream's first packet (which tells it a track or a
//! simulcast layer exists), and from then on the publish connection's `Uplink` authenticates and
//! decrypts that stream's packets in place with our own SRTP receiver (the remote side's keys,
//! from the same capture; per-stream rollover counter and a 128-packet replay window) and runs
//! them through the connection's feedback chain (receiver reports, NACKs, transport-wide-cc
//! feedback), which the connection itself holds and drives, so what the publisher hears covers
//! every packet. RTX, probes and anything unknown still go through the connection.
//! [`SfuStats::media_in`] counts which way packets came in.
//!
//! ```no_run
//! # async fn demo(offer: String) -> mescon_media::Result<()> {
//! use mescon_media::{Event, Sfu, SfuConfig};
//! let sfu = Sfu::start(SfuConfig::new("127.0.0.1:0".parse().unwrap())).await?;
//! let (me, mut events) = sfu.join("call-1", "alice").await?;
//! let answer = me.publish_offer(offer).await?;
//! # let _ = answer;
//! while let Some(event) = events.recv().await {
//!     if let Event::SubscribeOffer { sdp } = event {
//!         // send `sdp` to the client, then: me.subscribe_answer(client_answer).await?;
//! #       let _ = sdp;
//!     }
//! }
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

#[doc(hidden)]
pub mod bench;
mod bwe;
pub mod config;
mod downlink;
pub mod downtrack;
pub mod error;
mod interceptors;
pub mod latency;
pub mod layer;
pub mod net;
mod participant;
mod peer;
mod room;
pub mod rtp;
mod sfu;
pub mod srtp;
mod timers;
pub mod track;
mod uplink;
mod worker;

pub use config::{Limits, SfuConfig};
pub use error::{Error, Result};
pub use sfu::{MediaIn, ParticipantHandle, Repairs, Sfu, SfuStats};

/// Which of a participant's two peer connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pc {
    /// The client offers, the SFU answers; carries what the participant publishes.
    Publish,
    /// The SFU offers, the client answers; carries the other participants' tracks.
    Subscribe,
}

/// What the SFU tells the application about one participant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A new offer for the subscribe connection; answer with
    /// [`ParticipantHandle::subscribe_answer`].
    SubscribeOffer {
        /// The offer SDP.
        sdp: String,
    },
    /// A connection finished ICE and DTLS.
    Connected {
        /// Which connection.
        pc: Pc,
    },
    /// A connection failed; the participant has been removed from the room.
    Failed {
        /// Which connection.
        pc: Pc,
    },
    /// The loudest participant of the room changed (sent to every participant).
    ActiveSpeaker {
        /// The participant now speaking.
        participant: String,
    },
    /// Sent to a publisher: which simulcast layers of one of its tracks anyone receives.
    /// The client may pause the others (`RTCRtpSender.setParameters`, `active: false`).
    LayersNeeded {
        /// The publisher's own track id (its msid track id).
        track: String,
        /// For layers 0 (lowest) to 2: whether any subscriber needs it.
        layers: [bool; 3],
    },
    /// Sent to a publisher: one of its tracks is not forwarded, because the room already has
    /// [`Limits::max_tracks`] tracks. The client may stop sending it.
    TrackRefused {
        /// The publisher's own track id (its msid track id; empty if its offer named none).
        track: String,
        /// Which limit, in words.
        reason: &'static str,
    },
}
