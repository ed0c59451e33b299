//! The crate's error type.

/// What can go wrong when driving the SFU.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Binding or configuring a socket failed.
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    /// The WebRTC core refused an operation (bad SDP, bad candidate, ...).
    #[error("webrtc: {0}")]
    Rtc(#[from] rtc::shared::error::Error),
    /// The participant is not (or no longer) in the room.
    #[error("unknown participant")]
    UnknownParticipant,
    /// A participant with this id is already in the room.
    #[error("participant already joined")]
    AlreadyJoined,
    /// A per-room limit was reached.
    #[error("limit reached: {0}")]
    Limit(&'static str),
    /// The SDP or candidate given is not acceptable in the current state.
    #[error("invalid signaling: {0}")]
    Signaling(&'static str),
    /// Our SRTP sender could not be keyed or could not protect a packet.
    #[error("srtp: {0}")]
    Srtp(&'static str),
    /// The SFU is shutting down.
    #[error("sfu closed")]
    Closed,
}

/// Result with the crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
