//! The media side of a room: driving connections, the forwarding hot path, keyframe relays and
//! periodic housekeeping.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rtc::peer_connection::event::{RTCPeerConnectionEvent, RTCTrackEvent, RTCTrackEventInit};
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::rtp;
use rtc::sansio::Protocol;

use super::Room;
use crate::downlink::REPORT_INTERVAL;
use crate::participant::Participant;
use crate::rtp::codec::Codec;
use crate::track::{CachedPacket, KeyframeThrottle, Track, TrackId, cache_horizon};
use crate::worker::Ctx;
use crate::{Event, Pc};

/// How often one subscriber re-asks for a keyframe it is still waiting for.
const KEYFRAME_RETRY: Duration = Duration::from_millis(1000);
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
            peer.take_feedback(now);
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
                            resolve_payload_types(p);
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

    /// The hot path: one packet from a publisher to every subscriber of its track.
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
        // By SSRC first, which finds the layer too: the id `rtc` reports is empty for every
        // track of a client that names none. A stream not seen open yet goes by that id.
        let found = p
            .tracks
            .iter()
            .enumerate()
            .find_map(|(i, t)| Some((i, t.layer_of(ssrc)?)));
        let (track, layer) = match found {
            Some((i, layer)) => (&mut p.tracks[i], layer),
            None => {
                let Some(track) = p.tracks.iter_mut().find(|t| t.rtc_track_id == rtc_track_id)
                else {
                    return;
                };
                track.add_layer(ssrc, None);
                let Some(layer) = track.layer_of(ssrc) else {
                    return;
                };
                (track, layer)
            }
        };
        if let Some(l) = track.layers.iter_mut().find(|l| l.index == layer) {
            l.bitrate.add(now, packet.payload.len());
            if let Some(cache) = l.cache.as_mut() {
                cache.insert(
                    packet.header.sequence_number,
                    CachedPacket {
                        at: now,
                        timestamp: packet.header.timestamp,
                        marker: packet.header.marker,
                        payload: packet.payload.clone(),
                    },
                );
            }
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

        for (sub_id, sub) in self.participants.iter_mut() {
            if **sub_id == *pid {
                continue;
            }
            let Some(link) = sub.subscribe.as_mut().and_then(|p| p.downlink.as_mut()) else {
                continue;
            };
            let Some(dt) = sub.downtracks.iter_mut().find(|d| d.track == id) else {
                continue;
            };
            dt.write(link, &mut ctx.out, &packet, layer, keyframe, now);
        }
    }

    /// Answers a subscriber's NACK from the publisher's packet cache: each lost packet is
    /// mapped back to the layer and sequence number it was forwarded from and sent again (as
    /// RTX where the subscriber negotiated it). Packets no longer cached are left to the
    /// subscriber's keyframe request.
    fn repair(&mut self, ctx: &mut Ctx, sub_id: &str, track: &str, lost: &[u16], now: Instant) {
        let Some(dt) = self
            .participants
            .get(sub_id)
            .and_then(|s| s.downtracks.iter().find(|d| d.rtc_track_id == track))
        else {
            return;
        };
        let Some(source) = self
            .participants
            .values()
            .find_map(|p| p.tracks.iter().find(|t| t.id == dt.track))
        else {
            return;
        };
        let repairs: Vec<(u16, u32, CachedPacket)> = lost
            .iter()
            .filter_map(|&seq| {
                let origin = dt.forwarder.origin(seq)?;
                let packet = source.cached(origin.layer, origin.seq)?;
                Some((seq, origin.ts_offset, packet.clone()))
            })
            .collect();
        if repairs.is_empty() {
            return;
        }
        let Some(sub) = self.participants.get_mut(sub_id) else {
            return;
        };
        let (Some(link), Some(dt)) = (
            sub.subscribe.as_mut().and_then(|p| p.downlink.as_mut()),
            sub.downtracks.iter_mut().find(|d| d.rtc_track_id == track),
        ) else {
            return;
        };
        for (seq, ts_offset, packet) in &repairs {
            dt.resend(link, &mut ctx.out, *seq, *ts_offset, packet, now);
        }
    }

    /// A subscriber's PLI/FIR for one of its downtracks, relayed to the publisher (throttled).
    fn relay_keyframe_request(&mut self, ctx: &mut Ctx, sub_id: &str, track: &str, now: Instant) {
        let Some(sub) = self.participants.get(sub_id) else {
            return;
        };
        let Some(dt) = sub.downtracks.iter().find(|d| d.rtc_track_id == track) else {
            return;
        };
        let (id, layer) = (
            dt.track,
            dt.forwarder.current().unwrap_or(dt.forwarder.target()),
        );
        self.request_keyframe(ctx, id, layer, now, false);
    }

    /// Sends a PLI for a track's layer unless the throttle holds it (then it goes later).
    fn request_keyframe(
        &mut self,
        ctx: &mut Ctx,
        id: TrackId,
        layer: usize,
        now: Instant,
        flush_only: bool,
    ) {
        for p in self.participants.values_mut() {
            let Some(t) = p.track_mut(id) else { continue };
            let due = if flush_only {
                t.keyframes.poll(now)
            } else {
                t.keyframes.request(now)
            };
            if !due {
                // Held by the throttle: remember which layer was wanted for when it opens.
                if !flush_only {
                    t.pending_keyframe_layer = Some(layer);
                }
                return;
            }
            let layer = t
                .pending_keyframe_layer
                .take()
                .filter(|_| flush_only)
                .unwrap_or(layer);
            let Some(media_ssrc) = t
                .ssrc_of(layer)
                .or_else(|| t.layers.first().map(|l| l.ssrc))
            else {
                return;
            };
            let receiver_id = t.receiver_id;
            let Some(peer) = p.publish.as_mut() else {
                return;
            };
            if let Some(mut r) = peer.pc.rtp_receiver(receiver_id) {
                let _ = r.write_rtcp(
                    now,
                    vec![Box::new(PictureLossIndication {
                        sender_ssrc: 0,
                        media_ssrc,
                    })],
                );
            }
            peer.flush(&mut ctx.out);
            return;
        }
    }

    /// Sender reports for every stream a subscriber connection carries, once per
    /// [`REPORT_INTERVAL`], in one compound packet through the connection's own RTCP path.
    fn send_reports(&mut self, ctx: &mut Ctx, now: Instant) {
        let ntp_now = ntp_time(SystemTime::now());
        for sub in self.participants.values_mut() {
            let Some(peer) = sub.subscribe.as_mut() else {
                continue;
            };
            let Some(link) = peer.downlink.as_mut() else {
                continue;
            };
            if link
                .last_report
                .is_some_and(|t| now.saturating_duration_since(t) < REPORT_INTERVAL)
            {
                continue;
            }
            link.last_report = Some(now);
            let reports: Vec<Box<dyn rtc::rtcp::Packet>> = sub
                .downtracks
                .iter()
                .filter_map(|dt| dt.sender_report(now, ntp_now))
                .map(|sr| Box::new(sr) as Box<dyn rtc::rtcp::Packet>)
                .collect();
            let Some(first) = sub.downtracks.first() else {
                continue;
            };
            if reports.is_empty() {
                continue;
            }
            if let Some(mut sender) = peer.pc.rtp_sender(first.sender_id) {
                let _ = sender.write_rtcp(now, reports);
            }
            peer.flush(&mut ctx.out);
        }
    }

    /// Asks publishers for keyframes that connected subscribers are waiting for.
    pub fn ask_keyframes(&mut self, ctx: &mut Ctx, now: Instant) {
        let mut wanted: Vec<(TrackId, usize)> = Vec::new();
        for sub in self.participants.values_mut() {
            if !sub.subscribe.as_ref().is_some_and(|p| p.connected) {
                continue;
            }
            for dt in &mut sub.downtracks {
                let stale = dt
                    .last_keyframe_ask
                    .is_none_or(|t| now.saturating_duration_since(t) >= KEYFRAME_RETRY);
                if dt.payload_type.is_some() && dt.forwarder.wants_keyframe() && stale {
                    dt.last_keyframe_ask = Some(now);
                    wanted.push((dt.track, dt.forwarder.target()));
                }
            }
        }
        for (id, layer) in wanted {
            self.request_keyframe(ctx, id, layer, now, false);
        }
    }

    /// Periodic work: connect timeouts, keyframe retries and throttled requests.
    pub fn housekeeping(&mut self, ctx: &mut Ctx, now: Instant) {
        for p in self.participants.values() {
            for peer in [p.publish.as_ref(), p.subscribe.as_ref()]
                .into_iter()
                .flatten()
            {
                if !peer.connected
                    && peer
                        .negotiated_at
                        .is_some_and(|t| now.saturating_duration_since(t) > ctx.connect_timeout)
                {
                    p.emit(Event::Failed { pc: peer.kind });
                    ctx.removals.push((self.id.clone(), p.id.clone()));
                }
            }
        }
        self.ask_keyframes(ctx, now);
        self.policy_tick(ctx, now);
        self.send_reports(ctx, now);
        let horizon = cache_horizon(
            self.participants
                .values()
                .filter_map(|p| p.subscribe.as_ref())
                .filter(|peer| peer.connected)
                .map(|peer| peer.downlink.as_ref().and_then(|d| d.rtt())),
        );
        if let Some(oldest) = now.checked_sub(horizon) {
            for t in self
                .participants
                .values_mut()
                .flat_map(|p| p.tracks.iter_mut())
            {
                t.age_caches(oldest);
            }
        }
        let pending: Vec<(TrackId, usize)> = self
            .participants
            .values()
            .flat_map(|p| p.tracks.iter().map(|t| (t.id, 0)))
            .collect();
        for (id, layer) in pending {
            self.request_keyframe(ctx, id, layer, now, true);
        }
    }
}

/// Learns the payload type the subscriber negotiated for each downtrack's codec, and the
/// connection's transport-wide-cc extension id.
pub(super) fn resolve_payload_types(p: &mut Participant) {
    let Some(peer) = p.subscribe.as_mut() else {
        return;
    };
    for dt in &mut p.downtracks {
        resolve_payload_type(&mut peer.pc, dt);
    }
    let twcc_ext = p
        .downtracks
        .iter()
        .find_map(|dt| twcc_extension(&mut peer.pc, dt.sender_id));
    peer.twcc_ext = twcc_ext;
    if let Some(link) = peer.downlink.as_mut() {
        link.set_twcc_ext(twcc_ext);
    }
}

/// The transport-wide-cc header extension id negotiated for one sender.
pub(crate) fn twcc_extension(
    pc: &mut rtc::peer_connection::RTCPeerConnection,
    sender: rtc::rtp_transceiver::RTCRtpSenderId,
) -> Option<u8> {
    let mut sender = pc.rtp_sender(sender)?;
    sender
        .get_parameters()
        .rtp_parameters
        .header_extensions
        .iter()
        .find(|h| h.uri == rtc::sdp::extmap::TRANSPORT_CC_URI)
        .map(|h| h.id as u8)
}

/// Learns the payload type negotiated for one downtrack's codec.
pub(crate) fn resolve_payload_type(
    pc: &mut rtc::peer_connection::RTCPeerConnection,
    dt: &mut crate::downtrack::DownTrack,
) {
    let Some(mut sender) = pc.rtp_sender(dt.sender_id) else {
        return;
    };
    let codecs = &sender.get_parameters().rtp_parameters.codecs;
    let same_mime = |c: &&rtc::rtp_transceiver::rtp_sender::RTCRtpCodecParameters| {
        c.rtp_codec.mime_type.eq_ignore_ascii_case(&dt.mime)
    };
    // The publisher's exact format first: an H.264 stream must not be labelled with the payload
    // type of another profile or packetization mode.
    dt.payload_type = codecs
        .iter()
        .filter(same_mime)
        .find(|c| c.rtp_codec.sdp_fmtp_line == dt.fmtp)
        .or_else(|| codecs.iter().find(same_mime))
        .map(|c| c.payload_type);
    let apt = dt.payload_type.map(|pt| format!("apt={pt}"));
    dt.rtx_payload_type = codecs
        .iter()
        .find(|c| {
            c.rtp_codec.mime_type.eq_ignore_ascii_case("video/rtx")
                && apt.as_deref().is_some_and(|apt| {
                    c.rtp_codec
                        .sdp_fmtp_line
                        .split(';')
                        .any(|p| p.trim() == apt)
                })
        })
        .map(|c| c.payload_type);
}

/// A wall-clock time as a 64-bit NTP timestamp (RFC 5905: seconds since 1900, 32.32 fixed).
fn ntp_time(t: SystemTime) -> u64 {
    const UNIX_TO_NTP: u64 = 2_208_988_800;
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() + UNIX_TO_NTP;
    let frac = ((since.subsec_nanos() as u64) << 32) / 1_000_000_000;
    secs << 32 | frac
}
