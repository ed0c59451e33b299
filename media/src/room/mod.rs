//! A room: the participants of one call and the signaling that wires their tracks together.

mod feedback;
mod media;
mod negotiated;
pub(crate) use negotiated::{resolve_payload_type, twcc_extension};
mod policy;
mod sdp;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::transport::RTCIceCandidateInit;
use rtc::sansio::Protocol;
use tokio::sync::mpsc;

use crate::downtrack::DownTrack;
use crate::error::{Error, Result};
use crate::participant::{Negotiation, Participant};
use crate::peer::Peer;
use crate::track::TrackId;
use crate::worker::{ConnInfo, Ctx};
use crate::{Event, Pc};

/// The participants of one call, all owned by one worker so forwarding never crosses tasks.
pub(crate) struct Room {
    pub id: Arc<str>,
    /// Boxed: a participant is ~19 KB (two peer connections), and a map of small rooms
    /// keeps spare buckets that would otherwise hold that much each.
    pub participants: HashMap<Arc<str>, Box<Participant>>,
    /// Last participant announced as active speaker.
    pub active_speaker: Option<Arc<str>>,
    /// When layers and the active speaker were last decided.
    pub last_policy: Option<Instant>,
}

impl Room {
    /// An empty room.
    pub fn new(id: Arc<str>) -> Self {
        Self {
            id,
            participants: HashMap::new(),
            active_speaker: None,
            last_policy: None,
        }
    }

    /// Adds a participant and subscribes it to every track already published in the room (a late
    /// joiner, or one re-joining after a failure, must not wait for tracks that are already flowing).
    pub fn join(
        &mut self,
        ctx: &mut Ctx,
        id: Arc<str>,
        events: mpsc::UnboundedSender<Event>,
        now: Instant,
    ) -> Result<()> {
        if self.participants.contains_key(&id) {
            return Err(Error::AlreadyJoined);
        }
        if self.participants.len() >= ctx.limits.max_participants {
            return Err(Error::Limit("participants per room"));
        }
        self.participants.insert(
            id.clone(),
            Box::new(Participant::new(id.clone(), events, 2)),
        );
        let existing: Vec<(Arc<str>, TrackId)> = self
            .participants
            .iter()
            .filter(|(pid, _)| **pid != id)
            .flat_map(|(pid, p)| p.tracks.iter().map(move |t| (pid.clone(), t.id)))
            .collect();
        for (publisher, track) in existing {
            if let Err(e) = self.subscribe(ctx, &id, &publisher, track, now) {
                tracing::debug!(error = %e, "subscribing a late joiner failed");
            }
        }
        Ok(())
    }

    /// Removes a participant, closing its connections and unsubscribing everyone from its
    /// tracks. Frees every route and buffer it held.
    pub fn leave(&mut self, ctx: &mut Ctx, id: &str, now: Instant) -> Result<()> {
        let mut p = self
            .participants
            .remove(id)
            .ok_or(Error::UnknownParticipant)?;
        for peer in [p.publish.take(), p.subscribe.take()].into_iter().flatten() {
            ctx.forget_peer(peer);
        }
        let gone: Vec<TrackId> = p.tracks.iter().map(|t| t.id).collect();
        for sub_id in self.participant_ids() {
            self.unsubscribe(ctx, &sub_id, &gone, now);
        }
        if self.active_speaker.as_deref() == Some(id) {
            self.active_speaker = None;
        }
        Ok(())
    }

    fn participant_ids(&self) -> Vec<Arc<str>> {
        self.participants.keys().cloned().collect()
    }

    /// Applies the client's publish offer and returns our answer.
    pub fn publish_offer(
        &mut self,
        ctx: &mut Ctx,
        pid: &str,
        sdp: String,
        now: Instant,
    ) -> Result<String> {
        let room_id = self.id.clone();
        let p = self
            .participants
            .get_mut(pid)
            .ok_or(Error::UnknownParticipant)?;
        if p.publish.is_none() {
            let peer = ctx.new_peer(&room_id, &p.id, Pc::Publish, now)?;
            p.publish = Some(peer);
        }
        let Some(peer) = p.publish.as_mut() else {
            return Err(Error::UnknownParticipant);
        };
        let sent: Vec<String> = sdp::sent_track_ids(&sdp)
            .into_iter()
            .map(str::to_owned)
            .collect();
        peer.pc
            .set_remote_description(now, RTCSessionDescription::offer(sdp)?)?;
        let answer = peer.pc.create_answer(None)?;
        peer.pc.set_local_description(now, answer)?;
        peer.negotiated_at.get_or_insert(now);
        ctx.refresh_ufrag(peer);
        let answer = peer
            .pc
            .local_description()
            .map(|d| d.sdp)
            .ok_or(Error::Signaling("no local description"))?;
        // Tracks the last offer sent and this one does not are gone: subscribers get an offer
        // without them.
        let gone: Vec<String> = p
            .tracks
            .iter()
            .filter(|t| p.offered.contains(&t.rtc_track_id) && !sent.contains(&t.rtc_track_id))
            .map(|t| t.rtc_track_id.clone())
            .collect();
        p.offered = sent;
        for track in gone {
            self.on_track_close(ctx, pid, &track, now);
        }
        self.drive(ctx, pid, Pc::Publish, now);
        Ok(answer)
    }

    /// Applies the client's answer to our last subscribe offer.
    pub fn subscribe_answer(
        &mut self,
        ctx: &mut Ctx,
        pid: &str,
        sdp: String,
        now: Instant,
    ) -> Result<()> {
        let p = self
            .participants
            .get_mut(pid)
            .ok_or(Error::UnknownParticipant)?;
        let dirty = match p.negotiation {
            Negotiation::Offered { dirty } => dirty,
            Negotiation::Stable => return Err(Error::Signaling("no subscribe offer outstanding")),
        };
        let Some(peer) = p.subscribe.as_mut() else {
            return Err(Error::Signaling("no subscribe connection"));
        };
        peer.pc
            .set_remote_description(now, RTCSessionDescription::answer(sdp)?)?;
        peer.negotiated_at.get_or_insert(now);
        p.negotiation = Negotiation::Stable;
        negotiated::resolve_payload_types(p);
        self.drive(ctx, pid, Pc::Subscribe, now);
        if dirty {
            self.renegotiate(ctx, pid, now)?;
        }
        Ok(())
    }

    /// Adds a trickled remote candidate.
    pub fn add_candidate(
        &mut self,
        ctx: &mut Ctx,
        pid: &str,
        pc: Pc,
        candidate: String,
        now: Instant,
    ) -> Result<()> {
        let p = self
            .participants
            .get_mut(pid)
            .ok_or(Error::UnknownParticipant)?;
        let peer = p
            .peer_mut(pc)
            .ok_or(Error::Signaling("connection not negotiated yet"))?;
        let candidate = candidate
            .strip_prefix("a=")
            .unwrap_or(&candidate)
            .to_owned();
        if candidate.is_empty() {
            return Ok(()); // end-of-candidates
        }
        peer.pc.add_remote_candidate(RTCIceCandidateInit {
            candidate,
            ..Default::default()
        })?;
        self.drive(ctx, pid, pc, now);
        Ok(())
    }

    /// Restarts ICE on the subscribe connection (a new offer with fresh credentials follows as
    /// [`Event::SubscribeOffer`]). The publish connection restarts when the client sends a
    /// publish offer with new credentials.
    pub fn restart_ice(&mut self, ctx: &mut Ctx, pid: &str, now: Instant) -> Result<()> {
        let p = self
            .participants
            .get_mut(pid)
            .ok_or(Error::UnknownParticipant)?;
        let Some(peer) = p.subscribe.as_mut() else {
            return Ok(());
        };
        peer.pc.restart_ice();
        self.renegotiate(ctx, pid, now)
    }

    /// Caps the simulcast layer a participant receives (0 lowest .. 2 highest), e.g. from the
    /// size its UI shows video at. Applied at the next policy run, switching at a keyframe.
    pub fn set_max_layer(&mut self, pid: &str, layer: usize) -> Result<()> {
        let p = self
            .participants
            .get_mut(pid)
            .ok_or(Error::UnknownParticipant)?;
        p.max_layer = layer.min(crate::track::MAX_LAYERS - 1);
        // Decide now rather than at the next interval.
        self.last_policy = None;
        Ok(())
    }

    /// Subscribes `sub_id` to a newly published track.
    fn subscribe(
        &mut self,
        ctx: &mut Ctx,
        sub_id: &str,
        publisher: &Arc<str>,
        track: TrackId,
        now: Instant,
    ) -> Result<()> {
        let Some(pubr) = self.participants.get(publisher) else {
            return Ok(());
        };
        let Some(t) = pubr.tracks.iter().find(|t| t.id == track) else {
            return Ok(());
        };
        let (kind, codec, rtp_codec) = (t.kind, t.codec, t.rtp_codec.clone());
        // Start on the lowest layer the publisher sends; policy raises it once the estimate is known.
        let first_layer = t.layers.iter().map(|l| l.index).min().unwrap_or(0);
        let rtc_track_id = format!("{}:{}", publisher, t.rtc_track_id);
        let room_id = self.id.clone();
        let Some(sub) = self.participants.get_mut(sub_id) else {
            return Ok(());
        };
        if sub.subscribe.is_none() {
            sub.subscribe = Some(ctx.new_peer(&room_id, &sub.id, Pc::Subscribe, now)?);
        }
        let Some(peer) = sub.subscribe.as_mut() else {
            return Ok(());
        };
        let mut dt = DownTrack::attach(
            &mut peer.pc,
            track,
            publisher,
            rtc_track_id,
            kind,
            codec,
            rtp_codec,
        )?;
        dt.forwarder.set_target(first_layer);
        sub.downtracks.push(dt);
        self.renegotiate(ctx, sub_id, now)
    }

    /// Removes `sub_id`'s downtracks of these tracks.
    fn unsubscribe(&mut self, ctx: &mut Ctx, sub_id: &str, tracks: &[TrackId], now: Instant) {
        let Some(sub) = self.participants.get_mut(sub_id) else {
            return;
        };
        let before = sub.downtracks.len();
        let mut removed = Vec::new();
        sub.downtracks.retain(|d| {
            let gone = tracks.contains(&d.track);
            if gone {
                removed.push(d.sender_id);
            }
            !gone
        });
        if sub.downtracks.len() == before {
            return;
        }
        if let Some(peer) = sub.subscribe.as_mut() {
            for id in removed {
                let _ = peer.pc.remove_track(id);
            }
        }
        if let Err(e) = self.renegotiate(ctx, sub_id, now) {
            tracing::debug!(error = %e, "subscribe renegotiation failed");
        }
    }

    /// Sends a new subscribe offer, or marks one as needed if an offer is outstanding.
    fn renegotiate(&mut self, ctx: &mut Ctx, sub_id: &str, now: Instant) -> Result<()> {
        let Some(sub) = self.participants.get_mut(sub_id) else {
            return Ok(());
        };
        if let Negotiation::Offered { .. } = sub.negotiation {
            sub.negotiation = Negotiation::Offered { dirty: true };
            return Ok(());
        }
        let Some(peer) = sub.subscribe.as_mut() else {
            return Ok(());
        };
        let offer = peer.pc.create_offer(None)?;
        peer.pc.set_local_description(now, offer)?;
        ctx.refresh_ufrag(peer);
        let sdp = peer
            .pc
            .local_description()
            .map(|d| d.sdp)
            .ok_or(Error::Signaling("no local description"))?;
        peer.flush(&mut ctx.out);
        sub.negotiation = Negotiation::Offered { dirty: false };
        sub.emit(Event::SubscribeOffer { sdp });
        Ok(())
    }
}

impl Ctx {
    /// Builds a peer connection owned by this worker.
    pub(crate) fn new_peer(
        &mut self,
        room: &Arc<str>,
        participant: &Arc<str>,
        pc: Pc,
        now: Instant,
    ) -> Result<Peer> {
        let conn = self.transport.router.new_conn();
        // Its ufrag is routed once a local description exists (see `refresh_ufrag`).
        let peer = Peer::new(conn, pc, &self.transport.candidates, now)?;
        self.conns.insert(
            conn,
            ConnInfo {
                room: room.clone(),
                participant: participant.clone(),
                pc,
            },
        );
        Ok(peer)
    }

    /// Routes the ufrag of a new local description, replacing the previous one (ICE restart).
    /// Must run before the description leaves, so the client's first check finds its route.
    pub(crate) fn refresh_ufrag(&mut self, peer: &mut Peer) {
        if let Some(ufrag) = peer.local_ufrag()
            && ufrag != peer.ufrag
        {
            if !peer.ufrag.is_empty() {
                self.transport.router.remove_ufrag(&peer.ufrag);
            }
            self.transport
                .router
                .set_ufrag(&ufrag, self.route(peer.conn));
            peer.ufrag = ufrag;
        }
    }

    /// Closes a peer connection and drops every route to it.
    pub(crate) fn forget_peer(&mut self, mut peer: Peer) {
        let _ = peer.pc.close();
        peer.flush(&mut self.out);
        self.transport.router.remove_conn(peer.conn);
        self.conns.remove(&peer.conn);
    }
}
