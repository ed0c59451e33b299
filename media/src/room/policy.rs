//! Room policy decided a few times a second: each subscriber's simulcast layers, which layers
//! publishers still need to send, and who the active speaker is.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;

use super::Room;
use crate::Event;
use crate::config::Limits;
use crate::layer::select_layer;
use crate::track::{MAX_LAYERS, TrackId};
use crate::worker::Ctx;

/// How often policy runs.
const POLICY_INTERVAL: Duration = Duration::from_millis(250);
/// Bandwidth set aside per audio downtrack before video is budgeted.
const AUDIO_BPS: u64 = 64_000;
/// Audio quieter than this (in -dBov) is not speech.
const SPEECH_THRESHOLD: u32 = 60;

impl Room {
    /// Runs policy if it is due.
    pub(super) fn policy_tick(&mut self, ctx: &mut Ctx, now: Instant) {
        if self
            .last_policy
            .is_some_and(|t| now.saturating_duration_since(t) < POLICY_INTERVAL)
        {
            return;
        }
        self.last_policy = Some(now);
        self.select_layers(&ctx.limits, now);
        self.tell_needed_layers();
        self.elect_speaker();
    }

    /// Sets every subscriber's target layer from its estimate, its requested size, its share
    /// of the room's budget and the publishers' measured layer bitrates.
    fn select_layers(&mut self, limits: &Limits, now: Instant) {
        let rates: HashMap<TrackId, Vec<(usize, u64)>> = self
            .participants
            .values()
            .flat_map(|p| p.tracks.iter())
            // Every video track, not only simulcast ones: a single encoding sent with a RID
            // ranks as that RID, and the selector's floor then picks it.
            .filter(|t| t.kind == RtpCodecKind::Video)
            .map(|t| (t.id, t.layer_rates(now)))
            .collect();
        let kinds: HashMap<TrackId, RtpCodecKind> = self
            .participants
            .values()
            .flat_map(|p| p.tracks.iter().map(|t| (t.id, t.kind)))
            .collect();
        let receiving_video = self
            .participants
            .values()
            .filter(|p| p.downtracks.iter().any(|d| rates.contains_key(&d.track)))
            .count()
            .max(1) as u64;
        let cap_bps = limits
            .max_subscriber_bitrate
            .min(limits.max_room_bitrate / receiving_video);
        for sub in self.participants.values_mut() {
            let Some(estimate) = sub
                .subscribe
                .as_ref()
                .and_then(|p| p.downlink.as_ref())
                .map(|d| d.estimate_bps())
            else {
                continue;
            };
            let audio = sub
                .downtracks
                .iter()
                .filter(|d| kinds.get(&d.track) == Some(&RtpCodecKind::Audio))
                .count() as u64;
            let videos = sub
                .downtracks
                .iter()
                .filter(|d| rates.contains_key(&d.track))
                .count() as u64;
            if videos == 0 {
                continue;
            }
            let budget = estimate.min(cap_bps).saturating_sub(audio * AUDIO_BPS) / videos;
            for dt in &mut sub.downtracks {
                if let Some(layers) = rates.get(&dt.track) {
                    let target =
                        select_layer(dt.forwarder.current(), layers, budget, sub.max_layer);
                    if target != dt.forwarder.target() {
                        tracing::debug!(subscriber = %sub.id, current = ?dt.forwarder.current(), target, max_layer = sub.max_layer, ?layers, budget, "layer target");
                    }
                    dt.forwarder.set_target(target);
                }
            }
        }
    }

    /// Tells publishers when the set of layers anyone receives changes.
    ///
    /// Needed are the layers subscribers get or are moving to, and the one above each target
    /// when the subscriber shows video large enough for it: a paused layer has no measured
    /// bitrate, so without it flowing nobody could ever move up to it again.
    fn tell_needed_layers(&mut self) {
        let mut needed: HashMap<TrackId, [bool; MAX_LAYERS]> = HashMap::new();
        for sub in self.participants.values() {
            for dt in &sub.downtracks {
                let n = needed.entry(dt.track).or_default();
                let target = dt.forwarder.target();
                let above = Some(target + 1).filter(|l| *l <= sub.max_layer);
                for l in [Some(target), dt.forwarder.current(), above]
                    .into_iter()
                    .flatten()
                {
                    if l < MAX_LAYERS {
                        n[l] = true;
                    }
                }
            }
        }
        for p in self.participants.values_mut() {
            let mut changes = Vec::new();
            for t in p.tracks.iter_mut().filter(|t| t.is_simulcast()) {
                let mut now_needed = needed.get(&t.id).copied().unwrap_or_default();
                // Always keep the lowest layer flowing: a new subscriber starts there.
                now_needed[0] = true;
                if now_needed != t.needed {
                    t.needed = now_needed;
                    changes.push((t.rtc_track_id.clone(), now_needed));
                }
            }
            for (track, layers) in changes {
                tracing::debug!(publisher = %p.id, %track, ?layers, "layers needed");
                p.emit(Event::LayersNeeded { track, layers });
            }
        }
    }

    /// Announces the loudest participant heard since the last decision, if it changed.
    fn elect_speaker(&mut self) {
        let mut loudest: Option<(u32, Arc<str>)> = None;
        for p in self.participants.values_mut() {
            let (sum, n) = std::mem::take(&mut p.audio_window);
            if n == 0 {
                continue;
            }
            let avg = sum / n;
            if avg < SPEECH_THRESHOLD && loudest.as_ref().is_none_or(|(l, _)| avg < *l) {
                loudest = Some((avg, p.id.clone()));
            }
        }
        let Some((_, speaker)) = loudest else {
            return;
        };
        if self.active_speaker.as_ref() == Some(&speaker) {
            return;
        }
        self.active_speaker = Some(speaker.clone());
        for p in self.participants.values() {
            p.emit(Event::ActiveSpeaker {
                participant: speaker.to_string(),
            });
        }
    }
}
