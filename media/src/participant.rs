//! A participant of a room: its two peer connections, what it publishes and what it receives.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::downtrack::DownTrack;
use crate::peer::Peer;
use crate::track::{Track, TrackId};
use crate::{Event, Pc};

/// Where the subscribe connection's offer/answer exchange stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Negotiation {
    /// No offer outstanding.
    Stable,
    /// An offer was sent; `dirty` if tracks changed since, so another offer must follow.
    Offered { dirty: bool },
}

/// One participant, owned by its room's worker.
pub(crate) struct Participant {
    pub id: Arc<str>,
    pub events: mpsc::UnboundedSender<Event>,
    /// The client's offer → our answer connection, carrying what it publishes.
    pub publish: Option<Peer>,
    /// Our offer → the client's answer connection, carrying the others' tracks.
    pub subscribe: Option<Peer>,
    pub negotiation: Negotiation,
    pub tracks: Vec<Track>,
    /// The msid track ids its last publish offer sent: a track is closed when an offer stops
    /// sending an id the one before sent (never for a client that names no tracks).
    pub offered: Vec<String>,
    pub downtracks: Vec<DownTrack>,
    /// Highest layer this participant wants (its requested size), 0..=2.
    pub max_layer: usize,
    /// Audio levels heard since the last speaker decision: (sum of -dBov, packets).
    pub audio_window: (u32, u32),
}

impl Participant {
    /// A participant that has joined but not yet signaled.
    pub fn new(id: Arc<str>, events: mpsc::UnboundedSender<Event>, max_layer: usize) -> Self {
        Self {
            id,
            events,
            publish: None,
            subscribe: None,
            negotiation: Negotiation::Stable,
            tracks: Vec::new(),
            offered: Vec::new(),
            downtracks: Vec::new(),
            max_layer,
            audio_window: (0, 0),
        }
    }

    /// One of its connections.
    pub fn peer_mut(&mut self, pc: Pc) -> Option<&mut Peer> {
        match pc {
            Pc::Publish => self.publish.as_mut(),
            Pc::Subscribe => self.subscribe.as_mut(),
        }
    }

    /// The published track with this id, if it is this participant's.
    pub fn track_mut(&mut self, id: TrackId) -> Option<&mut Track> {
        self.tracks.iter_mut().find(|t| t.id == id)
    }

    /// Tells the application something; a dropped receiver just means nobody listens.
    pub fn emit(&self, event: Event) {
        let _ = self.events.send(event);
    }
}
