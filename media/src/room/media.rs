//! The media side of a room: driving its connections, new tracks and the forwarding hot path.
//! What flows back (repairs, keyframe requests, reports) is in `feedback`.

use std::time::{Duration, Instant};

use rtc::peer_connection::event::{RTCPeerConnectionEvent, RTCTrackEvent, RTCTrackEventInit};
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::rtp;
use rtc::sansio::Protocol;

use super::Room;
use crate::rtp::codec::Codec;
use crate::track::{CachedPacket, KeyframeThrottle, Track, TrackId};
use crate::worker::Ctx;
use crate::{Event, Pc};

/// Keyframe requests reaching a publisher, per track.
const KEYFRAME_INTERVAL: Duration = Duration::from_millis(500);
/// Packets one NACK can have resent: a subscriber asking for more has lost too much for
/// retransmission to help, and a keyframe request will follow.
const MAX_REPAIRS_PER_NACK: usize = 64;

impl Room {
    /// Processes everything a connection has produced after an input or timeout: events,
    /// received media, and queued datagrams.
    pub fn drive(&mut self, ctx: &mut Ctx, pid: &str, pc: Pc, now: Instant) {
        loop {
            let Some(peer) = self.participants.get_mut(pid).and_then(|p| p.peer_mut(pc)) else {
                return;
            };
            if let Some(event) = peer.pc.poll_event() {
                self.on_event(ctx, pid, pc, event, now);
                continue;
            }
            if let Some(TaggedRTCMessage { message, .. }) = peer.pc.poll_read() {
                match message {
                    RTCMessage::RtpPacket(track_id, packet) if pc == Pc::Publish => {
                        self.forward(ctx, pid, &track_id, packet, now);
                    }
                    RTCMessage::RtcpPacket(track_id, packets) if pc == Pc::Subscribe => {
                        let wants_keyframe = packets.iter().any(|p| {
                            let any = p.as_any();
                            any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
                        });
                        if wants_keyframe {
                            self.relay_keyframe_request(ctx, pid, &track_id, now);
                        }
                        let lost: Vec<u16> = packets
                            .iter()
                            .filter_map(|p| p.as_any().downcast_ref::<TransportLayerNack>())
                            .flat_map(|n| n.nacks.iter().flat_map(|pair| pair.packet_list()))
                            .take(MAX_REPAIRS_PER_NACK)
                            .collect();
                        if !lost.is_empty() {
                            self.repair(ctx, pid, &track_id, &lost, now);
                        }
                    }
                    _ => {}
                }
                continue;
            }
            peer.flush(&mut ctx.out);
            peer.take_feedback(now, &mut ctx.arrived);
            if !ctx.arrived.is_empty() {
                self.release_arrived(ctx, pid);
            }
            return;
        }
    }

    fn on_event(
        &mut self,
        ctx: &mut Ctx,
        pid: &str,
        pc: Pc,
        event: RTCPeerConnectionEvent,
        now: Instant,
    ) {
        match event {
            RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) => {
                let Some(p) = self.participants.get_mut(pid) else {
                    return;
                };
                match state {
                    RTCPeerConnectionState::Connected => {
                        if let Some(peer) = p.peer_mut(pc) {
                            peer.connected = true;
                            // The handshake's last flight may still be queued: it names the route.
                            peer.flush(&mut ctx.out);
                            // Without our receiver, media still arrives through the connection,
                            // only more slowly.
                            if pc == Pc::Publish
                                && let Err(e) = peer.start_uplink()
                            {
                                tracing::warn!(error = %e, "publisher media receiver not started");
                            }
                            if pc == Pc::Subscribe
                                && let Err(e) = peer.start_downlink(now)
                            {
                                // Without our sender the subscriber would get nothing: fail
                                // loudly so the application resets the member.
                                tracing::warn!(error = %e, "subscriber media sender not started");
                                p.emit(Event::Failed { pc });
                                ctx.removals.push((self.id.clone(), p.id.clone()));
                                return;
                            }
                        }
                        p.emit(Event::Connected { pc });
                        if pc == Pc::Subscribe {
                            super::negotiated::resolve_payload_types(p);
                            self.ask_keyframes(ctx, now);
                        }
                    }
                    RTCPeerConnectionState::Failed => {
                        p.emit(Event::Failed { pc });
                        ctx.removals.push((self.id.clone(), p.id.clone()));
                    }
                    _ => {}
                }
            }
            RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init)) if pc == Pc::Publish => {
                self.on_track_open(ctx, pid, init, now);
            }
            RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnClose(track_id))
                if pc == Pc::Publish =>
            {
                self.on_track_close(ctx, pid, &track_id, now);
            }
            _ => {}
        }
    }

    /// A publisher's stream delivered its first packet: a new track, or a new simulcast layer.
    fn on_track_open(&mut self, ctx: &mut Ctx, pid: &str, init: RTCTrackEventInit, now: Instant) {
        let room_tracks: usize = self.participants.values().map(|p| p.tracks.len()).sum();
        let Some(p) = self.participants.get_mut(pid) else {
            return;
        };
        // One receiver per published m-section: a new stream on it is another simulcast layer.
        if let Some(t) = p
            .tracks
            .iter_mut()
            .find(|t| t.receiver_id == init.receiver_id)
        {
            t.add_layer(init.ssrc, init.rid);
            return;
        }
        if room_tracks >= ctx.limits.max_tracks {
            tracing::debug!(room = %self.id, "track limit reached, not forwarding");
            p.emit(Event::TrackRefused {
                track: init.track_id,
                reason: "tracks per room",
            });
            return;
        }
        let Some(peer) = p.publish.as_mut() else {
            return;
        };
        let Some(mut receiver) = peer.pc.rtp_receiver(init.receiver_id) else {
            return;
        };
        let track = receiver.track();
        let kind = track.kind();
        let Some(rtp_codec) = track.codec(init.ssrc).cloned() else {
            return;
        };
        let audio_level_ext = receiver
            .get_parameters()
            .rtp_parameters
            .header_extensions
            .iter()
            .find(|h| h.uri == rtc::sdp::extmap::AUDIO_LEVEL_URI)
            .map(|h| h.id as u8);
        let id = TrackId(ctx.next_track_id());
        // A client may name no tracks (SDP allows leaving out a=msid); `rtc` then reports the
        // same empty id for all of them, which subscribers must not see twice.
        let rtc_track_id = if init.track_id.is_empty()
            || p.tracks.iter().any(|t| t.rtc_track_id == init.track_id)
        {
            format!("{kind}-{}", id.0)
        } else {
            init.track_id
        };
        let mut t = Track {
            id,
            rtc_track_id,
            receiver_id: init.receiver_id,
            kind,
            codec: Codec::from_mime(&rtp_codec.mime_type),
            rtp_codec,
            layers: Vec::new(),
            keyframes: KeyframeThrottle::new(KEYFRAME_INTERVAL),
            pending_keyframe_layer: None,
            audio_level_ext,
            needed: [true; crate::track::MAX_LAYERS],
        };
        t.add_layer(init.ssrc, init.rid);
        p.tracks.push(t);
        let publisher = p.id.clone();
        for sub in self.participant_ids() {
            if *sub != *pid
                && let Err(e) = self.subscribe(ctx, &sub, &publisher, id, now)
            {
                tracing::debug!(error = %e, "subscribing to a new track failed");
            }
        }
    }

    pub(super) fn on_track_close(
        &mut self,
        ctx: &mut Ctx,
        pid: &str,
        rtc_track_id: &str,
        now: Instant,
    ) {
        let Some(p) = self.participants.get_mut(pid) else {
            return;
        };
        let Some(pos) = p.tracks.iter().position(|t| t.rtc_track_id == rtc_track_id) else {
            return;
        };
        let id = p.tracks.remove(pos).id;
        for sub in self.participant_ids() {
            self.unsubscribe(ctx, &sub, &[id], now);
        }
    }

    /// A publisher's packet the connection decrypted: the first of a stream, which may name a
    /// new layer of a track, or one the uplink does not take. Known streams go to the uplink
    /// from here on.
    fn forward(
        &mut self,
        ctx: &mut Ctx,
        pid: &str,
        rtc_track_id: &str,
        packet: rtp::Packet,
        now: Instant,
    ) {
        let Some(p) = self.participants.get_mut(pid) else {
            return;
        };
        let ssrc = packet.header.ssrc;
        // By SSRC first: the id `rtc` reports is empty for every track of a client that names
        // none. A stream not seen open yet goes by that id.
        if !p.tracks.iter().any(|t| t.layer_of(ssrc).is_some()) {
            let Some(track) = p.tracks.iter_mut().find(|t| t.rtc_track_id == rtc_track_id) else {
                return;
            };
            track.add_layer(ssrc, None);
            if track.layer_of(ssrc).is_none() {
                return;
            }
        }
        if let Some(uplink) = p.publish.as_mut().and_then(|c| c.uplink.as_mut()) {
            uplink.adopt(ssrc, packet.header.sequence_number);
        }
        ctx.media_in.connection += 1;
        self.forward_media(ctx, pid, packet, now);
    }

    /// The hot path: one packet of a known stream from a publisher to every subscriber of its
    /// track.
    pub(crate) fn forward_media(
        &mut self,
        ctx: &mut Ctx,
        pid: &str,
        packet: rtp::Packet,
        now: Instant,
    ) {
        let Some(p) = self.participants.get_mut(pid) else {
            return;
        };
        let ssrc = packet.header.ssrc;
        let Some((track, layer)) = p
            .tracks
            .iter_mut()
            .find_map(|t| t.layer_of(ssrc).map(|layer| (t, layer)))
        else {
            return;
        };
        if let Some(l) = track.layers.iter_mut().find(|l| l.index == layer) {
            l.bitrate.add(now, packet.payload.len());
        }
        let keyframe = track.codec.is_keyframe(&packet.payload);
        let id = track.id;
        // RFC 6464: V bit and a 7-bit level in -dBov.
        let level = track
            .audio_level_ext
            .and_then(|ext| packet.header.get_extension(ext))
            .and_then(|v| v.first().map(|b| b & 0x7f));
        if let Some(level) = level {
            p.audio_window.0 += level as u32;
            p.audio_window.1 += 1;
        }

        let mut publisher = None;
        let mut sent = 0u16;
        let mut switching_here = false;
        for (sub_id, sub) in self.participants.iter_mut() {
            if **sub_id == *pid {
                publisher = Some(sub);
                continue;
            }
            let Some(link) = sub.subscribe.as_mut().and_then(|p| p.downlink.as_mut()) else {
                continue;
            };
            let Some(dt) = sub.downtracks.iter_mut().find(|d| d.track == id) else {
                continue;
            };
            if dt.write(link, &mut ctx.out, &packet, layer, keyframe, now) {
                sent = sent.saturating_add(1);
            } else if dt.forwarder.target() == layer {
                switching_here = true;
            }
        }
        // Cached after the fan-out, which tells how many subscribers could ask for it again.
        // A packet sent to nobody is kept only while a subscriber is moving to its layer: if it
        // overtook the keyframe the switch waits for, it follows that keyframe in the
        // subscriber's numbering, and the subscriber will ask for it.
        if (sent > 0 || switching_here)
            && let Some(track) = publisher.and_then(|p| p.track_mut(id))
        {
            track.cache(
                layer,
                packet.header.sequence_number,
                CachedPacket {
                    at: now,
                    awaiting: sent,
                    released: false,
                    timestamp: packet.header.timestamp,
                    marker: packet.header.marker,
                    payload: packet.payload,
                },
            );
        }
    }
}
