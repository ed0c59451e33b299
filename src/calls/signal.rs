//! `sfu.signal`: carries SDP and ICE candidates between a call member's browser and its participant
//! in the SFU room of the call, and the SFU's events back.
//!
//! Each member has two peer connections with the SFU (see `mescon_media`): on `pc: "publish"` the
//! client offers and the SFU answers; on `pc: "subscribe"` the SFU offers (whenever the other member's
//! tracks come or go) and the client answers. Frames, both ways:
//! `{"type":"sfu.signal","call_id","pc","sdp":{"type","sdp"}}`,
//! `{"type":"sfu.signal","call_id","pc","candidate":{"candidate",...}|null}` (client → server only:
//! the SFU is ICE-lite and lists its candidates in its SDP), `{"type":"sfu.signal","call_id",
//! "pc":"subscribe","restart":true}` (client asks for a fresh subscribe offer with new ICE
//! credentials), and server → client `{"type":"sfu.signal","call_id","active_speaker"}` and
//! `{"type":"sfu.signal","call_id","pc":"publish","layers_needed":{"track","layers"}}`, and
//! `{"type":"sfu.signal","call_id","pc":"subscribe","max_layer":0|1|2}` (client → server: the
//! largest simulcast layer worth sending it, from the size it shows the other member's video at),
//! `{"type":"sfu.signal","call_id","reset":true}` when the SFU dropped the member's media
//! session (ICE or DTLS failed): the client closes both peer connections, makes new ones and
//! sends their publish offer with `"reset":true`, which joins it afresh. Until then every other
//! signal of the member is answered with `reset` again.

use serde_json::{Map, Value, json};

use super::{Calls, State};
use crate::app::AppState;
use crate::http::error::ApiError;
use crate::realtime::Device;
use crate::realtime::hub::frame;
use mescon_media::{Event, ParticipantHandle, Pc, Sfu};

/// Handles one `sfu.signal` frame from `device` of `user`.
pub async fn signal(
    app: &AppState,
    user: &str,
    session: &str,
    device: &Device,
    call_id: &str,
    payload: &Map<String, Value>,
) {
    if let Err(e) = try_signal(app, user, session, device, call_id, payload).await {
        let v = json!({"type": "error", "code": e.code(), "message": e.message(), "ref": "sfu.signal", "call_id": call_id});
        let _ = device.push_wait(frame(&v)).await;
    }
}

fn media_error(e: mescon_media::Error) -> ApiError {
    // The SFU refuses bad SDP and limits with its own errors: those are the client's to fix.
    ApiError::invalid(format!("media: {e}"))
}

async fn try_signal(
    app: &AppState,
    user: &str,
    session: &str,
    device: &Device,
    call_id: &str,
    payload: &Map<String, Value>,
) -> Result<(), ApiError> {
    let sfu = app
        .sfu
        .as_ref()
        .ok_or_else(|| ApiError::conflict("media is not available on this server"))?;
    let membership = app.calls.with(|live| {
        live.get(call_id).and_then(|c| {
            c.members
                .get(user)
                .map(|m| (c.state, m.session.clone(), m.must_reset))
        })
    });
    let must_reset = match membership {
        None => return Err(ApiError::not_found()),
        Some((State::Ringing, ..)) => {
            return Err(ApiError::conflict("the call is not answered yet"));
        }
        Some((State::Active, Some(s), _)) if s != session => {
            return Err(ApiError::forbidden(
                "this call is carried by another of your devices",
            ));
        }
        Some((State::Active, _, must_reset)) => must_reset,
    };
    let pc = match payload.get("pc").and_then(Value::as_str) {
        Some("publish") => Pc::Publish,
        Some("subscribe") => Pc::Subscribe,
        _ => return Err(ApiError::invalid("pc must be publish or subscribe")),
    };
    let kind = payload
        .get("sdp")
        .and_then(|sdp| sdp.get("type"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let fresh = pc == Pc::Publish
        && kind == "offer"
        && payload.get("reset").and_then(Value::as_bool) == Some(true);
    if must_reset && !fresh {
        let _ = device.push_wait(frame(&reset_frame(call_id))).await;
        return Ok(());
    }
    if let Some(sdp) = payload.get("sdp") {
        let text = sdp
            .get("sdp")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty() && s.len() <= 60_000)
            .ok_or_else(|| ApiError::invalid("sdp.sdp must be an SDP text"))?
            .to_string();
        match (pc, kind) {
            (Pc::Publish, "offer") => {
                let answer = publish(app, sfu, call_id, user, text, fresh).await?;
                let v = json!({"type": "sfu.signal", "call_id": call_id, "pc": "publish",
                    "sdp": {"type": "answer", "sdp": answer}});
                let _ = device.push_wait(frame(&v)).await;
            }
            (Pc::Subscribe, "answer") => {
                participant(&app.calls, call_id, user)?
                    .subscribe_answer(text)
                    .await
                    .map_err(media_error)?;
            }
            _ => {
                return Err(ApiError::invalid(
                    "publish takes offers and subscribe takes answers",
                ));
            }
        }
        return Ok(());
    }
    if let Some(candidate) = payload.get("candidate") {
        if candidate.is_null() {
            return Ok(()); // end of candidates: the SFU needs no signal for it
        }
        let line = candidate
            .get("candidate")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::invalid("candidate.candidate must be a string"))?;
        if line.is_empty() {
            return Ok(()); // some browsers signal the end of candidates this way
        }
        if line.len() > 1024 {
            return Err(ApiError::invalid("candidate too long"));
        }
        return participant(&app.calls, call_id, user)?
            .add_candidate(pc, line.to_string())
            .await
            .map_err(media_error);
    }
    if payload.get("restart").and_then(Value::as_bool) == Some(true) && pc == Pc::Subscribe {
        return participant(&app.calls, call_id, user)?
            .restart_ice()
            .await
            .map_err(media_error);
    }
    if let Some(layer) = payload.get("max_layer") {
        let layer = layer
            .as_u64()
            .filter(|l| *l <= 2 && pc == Pc::Subscribe)
            .ok_or_else(|| ApiError::invalid("max_layer is 0, 1 or 2, on pc subscribe"))?;
        tracing::debug!(call = %call_id, %user, layer, "view size");
        return participant(&app.calls, call_id, user)?
            .set_max_layer(layer as usize)
            .await
            .map_err(media_error);
    }
    Err(ApiError::invalid(
        "sfu.signal needs sdp, candidate, restart or max_layer",
    ))
}

fn participant(calls: &Calls, call_id: &str, user: &str) -> Result<ParticipantHandle, ApiError> {
    calls
        .with(|live| live.get(call_id)?.members.get(user)?.participant.clone())
        .ok_or_else(|| ApiError::conflict("publish first: no media session for this call yet"))
}

/// Applies a publish offer, joining the room first if this member has no participant (its first
/// offer, or a new one after its media failed and the SFU dropped it). A `fresh` offer comes from
/// new peer connections: whatever participant the member had is replaced.
async fn publish(
    app: &AppState,
    sfu: &Sfu,
    call_id: &str,
    user: &str,
    offer: String,
    fresh: bool,
) -> Result<String, ApiError> {
    if let Ok(handle) = participant(&app.calls, call_id, user) {
        if !fresh && let Ok(answer) = handle.publish_offer(offer.clone()).await {
            return Ok(answer);
        }
        let _ = handle.leave().await;
    }
    let (handle, events) = sfu.join(call_id, user).await.map_err(media_error)?;
    let generation =
        app.calls.with(
            |live| match live.get_mut(call_id).and_then(|c| c.members.get_mut(user)) {
                Some(m) => {
                    m.participant = Some(handle.clone());
                    m.failed_since = None;
                    m.must_reset = false;
                    m.generation += 1;
                    Some(m.generation)
                }
                None => None,
            },
        );
    let Some(generation) = generation else {
        let _ = handle.leave().await;
        return Err(ApiError::not_found());
    };
    tokio::spawn(pump(
        app.clone(),
        call_id.to_string(),
        user.to_string(),
        generation,
        events,
    ));
    handle.publish_offer(offer).await.map_err(media_error)
}

/// Tells a member's browser that its media session is gone and it must start over.
fn reset_frame(call_id: &str) -> Value {
    json!({"type": "sfu.signal", "call_id": call_id, "reset": true})
}

/// Forwards one participant's SFU events to its member's session until the participant is gone
/// or replaced (`generation` is the member's participant count when this one joined).
async fn pump(
    app: AppState,
    call_id: String,
    user: String,
    generation: u64,
    mut events: tokio::sync::mpsc::UnboundedReceiver<Event>,
) {
    while let Some(event) = events.recv().await {
        let now = app.now();
        let session = app.calls.with(|live| {
            let m = live.get_mut(&call_id)?.members.get_mut(&user)?;
            if m.generation != generation {
                return None;
            }
            match &event {
                Event::Connected { .. } => {
                    m.connected = true;
                    m.failed_since = None;
                }
                Event::Failed { .. } => {
                    // The SFU removed the participant; the client starts over (reset below).
                    m.participant = None;
                    m.must_reset = true;
                    m.failed_since.get_or_insert(now);
                }
                _ => {}
            }
            m.session.clone()
        });
        let Some(session) = session else { break };
        let value = match event {
            Event::SubscribeOffer { sdp } => {
                json!({"type": "sfu.signal", "call_id": call_id, "pc": "subscribe", "sdp": {"type": "offer", "sdp": sdp}})
            }
            Event::ActiveSpeaker { participant } => {
                json!({"type": "sfu.signal", "call_id": call_id, "active_speaker": participant})
            }
            Event::LayersNeeded { track, layers } => {
                json!({"type": "sfu.signal", "call_id": call_id, "pc": "publish", "layers_needed": {"track": track, "layers": layers}})
            }
            Event::TrackRefused { track, reason } => {
                json!({"type": "sfu.signal", "call_id": call_id, "pc": "publish", "track_refused": {"track": track, "reason": reason}})
            }
            // The member's media session is gone with the participant: its browser must start
            // over with new connections (a new SFU connection has new DTLS keys and m-lines,
            // which an ICE restart of the old ones cannot take).
            Event::Failed { pc } => {
                tracing::info!(call = %call_id, ?pc, "media failed; asking the client to start over");
                reset_frame(&call_id)
            }
            Event::Connected { .. } => continue,
        };
        app.hub.send_to_session(&user, &session, &frame(&value));
    }
}
