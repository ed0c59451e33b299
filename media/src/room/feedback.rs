//! What a room sends on its own and on its subscribers' behalf: NACKs answered from the packet
//! cache, keyframe requests relayed to publishers (throttled), sender reports, and the periodic
//! housekeeping that drives the timed parts.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;

use super::Room;
use crate::Event;
use crate::downlink::REPORT_INTERVAL;
use crate::track::{CachedPacket, Lookup, TrackId, cache_horizon};
use crate::worker::Ctx;

/// How often one subscriber re-asks for a keyframe it is still waiting for.
const KEYFRAME_RETRY: Duration = Duration::from_millis(1000);

impl Room {
    /// Answers a subscriber's NACK from the publisher's packet cache: each lost packet is
    /// mapped back to the layer and sequence number it was forwarded from and sent again (as
    /// RTX where the subscriber negotiated it). Packets no longer cached are left to the
    /// subscriber's keyframe request. Every packet asked for is counted by outcome.
    pub(super) fn repair(
        &mut self,
        ctx: &mut Ctx,
        sub_id: &str,
        track: &str,
        lost: &[u16],
        now: Instant,
    ) {
        let outcomes = &mut ctx.repairs;
        let Some(dt) = self
            .participants
            .get(sub_id)
            .and_then(|s| s.downtracks.iter().find(|d| d.rtc_track_id == track))
        else {
            tracing::debug!(track, "NACK for a track the subscriber does not receive");
            outcomes.unmapped += lost.len() as u64;
            return;
        };
        let Some(source) = self
            .participants
            .values()
            .find_map(|p| p.tracks.iter().find(|t| t.id == dt.track))
        else {
            outcomes.unmapped += lost.len() as u64;
            return;
        };
        let repairs: Vec<(u16, u32, CachedPacket)> = lost
            .iter()
            .filter_map(|&seq| {
                let Some(origin) = dt.forwarder.origin(seq) else {
                    outcomes.unmapped += 1;
                    return None;
                };
                match source.lookup(origin.layer, origin.seq) {
                    Lookup::Cached(packet) => Some((seq, origin.ts_offset, packet.clone())),
                    Lookup::Released => {
                        outcomes.released += 1;
                        None
                    }
                    Lookup::Missing => {
                        outcomes.missing += 1;
                        None
                    }
                }
            })
            .collect();
        outcomes.sent += repairs.len() as u64;
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

    /// Releases the cached packets a subscriber's feedback (`ctx.arrived`) confirmed it has,
    /// once every subscriber they were sent to has confirmed them (see
    /// [`CachedPacket::awaiting`]).
    pub(super) fn release_arrived(&mut self, ctx: &mut Ctx, sub_id: &str) {
        let mut origins = std::mem::take(&mut ctx.origins);
        if let Some(sub) = self.participants.get(sub_id) {
            for m in ctx.arrived.drain(..) {
                // Only video is cached.
                let Some(dt) = sub
                    .downtracks
                    .iter()
                    .find(|d| d.ssrc == m.ssrc && d.forwarder.codec().is_video())
                else {
                    continue;
                };
                if let Some(o) = dt.forwarder.origin(m.seq) {
                    origins.push((dt.track, o.layer, o.seq));
                }
            }
        }
        ctx.arrived.clear();
        // Feedback interleaves the subscriber's streams: one track lookup per stream.
        origins.sort_unstable_by_key(|(track, ..)| *track);
        let mut rest = &origins[..];
        while let Some(&(id, ..)) = rest.first() {
            let run = rest.iter().take_while(|(t, ..)| *t == id).count();
            if let Some(track) = self.participants.values_mut().find_map(|p| p.track_mut(id)) {
                for &(_, layer, seq) in &rest[..run] {
                    track.confirm(layer, seq);
                }
            }
            rest = &rest[run..];
        }
        origins.clear();
        ctx.origins = origins;
    }

    /// A subscriber's PLI/FIR for one of its downtracks, relayed to the publisher (throttled).
    pub(super) fn relay_keyframe_request(
        &mut self,
        ctx: &mut Ctx,
        sub_id: &str,
        track: &str,
        now: Instant,
    ) {
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
    pub(super) fn request_keyframe(
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

/// A wall-clock time as a 64-bit NTP timestamp (RFC 5905: seconds since 1900, 32.32 fixed).
fn ntp_time(t: SystemTime) -> u64 {
    const UNIX_TO_NTP: u64 = 2_208_988_800;
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() + UNIX_TO_NTP;
    let frac = ((since.subsec_nanos() as u64) << 32) / 1_000_000_000;
    secs << 32 | frac
}
