//! Calls: the lifecycle (invite → ringing → accepted/declined/timeout → ended), history, and the
//! bridge between each member's `sfu.signal` frames and its participant in the SFU room of the call.
//!
//! A call lives in memory while it rings or runs, and in the store as history. It follows the
//! *session* of each member, not one socket, so a member whose WebSocket reconnects keeps the call
//! (the client restarts ICE; the SFU keeps the media path). Timeouts are read from the application
//! clock by a sweeper, so tests can move time instead of waiting.

mod signal;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::json;

use crate::app::App;
use crate::http::error::ApiError;
use crate::realtime::Device;
use crate::realtime::hub::frame;
use crate::store::new_id;

pub use signal::signal;

/// How long a call rings before it is missed.
pub const RING_TIMEOUT: Duration = Duration::from_secs(45);
/// How long a member's media may stay failed (or never start after answering) before the call ends.
pub const MEDIA_GRACE: Duration = Duration::from_secs(20);

/// Where a call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Ringing,
    Active,
}

/// One member's link to the SFU.
#[derive(Debug, Default)]
struct Member {
    /// The session whose devices carry this member's side of the call.
    session: Option<String>,
    /// Its participant in the SFU room, once it signalled.
    participant: Option<mescon_media::ParticipantHandle>,
    /// Since when its media has been failed (Unix ms), if it is.
    failed_since: Option<i64>,
    /// Whether a connection of it ever connected.
    connected: bool,
    /// The SFU dropped its media session: every signal but a publish offer from new peer
    /// connections (`"reset": true`) is answered with `reset`, so a lost `reset` frame (the
    /// socket was down) or a stray ICE restart still ends with the client starting over.
    must_reset: bool,
    /// Counts this member's SFU participants, so events of a replaced one change nothing.
    generation: u64,
}

/// A call that rings or runs.
#[derive(Debug)]
struct LiveCall {
    caller: String,
    callee: String,
    kind: String,
    state: State,
    started_at: i64,
    answered_at: Option<i64>,
    members: HashMap<String, Member>,
}

/// The calls that ring or run, by id, and the call each busy user is in.
#[derive(Debug, Default)]
pub struct Calls {
    live: Mutex<HashMap<String, LiveCall>>,
}

/// How a call ended, for the frames and the history row.
#[derive(Debug, Clone, Copy)]
struct Ending {
    /// The `call.ended` reason.
    reason: &'static str,
    /// The history status.
    status: &'static str,
}

impl Calls {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, LiveCall>) -> T) -> T {
        // A poisoned lock means a panic elsewhere; the map itself is still consistent.
        let mut guard = self.live.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    fn busy(&self, user: &str) -> bool {
        self.with(|live| live.values().any(|c| c.caller == user || c.callee == user))
    }
}

fn call_error(e: &ApiError, call_id: Option<&str>, ref_: &str) -> serde_json::Value {
    json!({"type": "error", "code": e.code(), "message": e.message(), "ref": ref_, "call_id": call_id})
}

/// Sends a frame to every device of both members.
fn to_both(app: &App, caller: &str, callee: &str, value: &serde_json::Value) {
    let f = frame(value);
    app.hub.send_to_user(caller, &f, None);
    app.hub.send_to_user(callee, &f, None);
}

/// `call.invite {"to","kind"}` from `device` of `caller`.
pub async fn invite(app: &App, caller: &str, session: &str, device: &Device, to: &str, kind: &str) {
    if let Err(e) = try_invite(app, caller, session, device, to, kind).await {
        let _ = device
            .push_wait(frame(&call_error(&e, None, "call.invite")))
            .await;
    }
}

async fn try_invite(
    app: &App,
    caller: &str,
    session: &str,
    device: &Device,
    to: &str,
    kind: &str,
) -> Result<(), ApiError> {
    if kind != "audio" && kind != "video" {
        return Err(ApiError::invalid("kind must be audio or video"));
    }
    if to == caller {
        return Err(ApiError::invalid("cannot call yourself"));
    }
    let reach = app.store.reachability(caller, to).await?;
    let Some((blocked_by_callee, blocked_by_caller)) = reach else {
        return Err(ApiError::not_found());
    };
    if app.calls.busy(caller) {
        return Err(ApiError::conflict("you are already in a call"));
    }
    let id = new_id();
    let now = app.now();
    let refused = if blocked_by_callee || blocked_by_caller {
        Some(Ending {
            reason: "failed",
            status: "failed",
        })
    } else if app.calls.busy(to) {
        Some(Ending {
            reason: "busy",
            status: "missed",
        })
    } else {
        None
    };
    if let Some(ending) = refused {
        app.store
            .insert_call(&id, caller, to, kind, ending.status, now)
            .await?;
        app.store
            .end_call(&id, ending.status, ending.reason, now)
            .await?;
        let _ = device
            .push_wait(frame(&json!({"type": "call.created", "call_id": id})))
            .await;
        let _ = device
            .push_wait(frame(
                &json!({"type": "call.ended", "call_id": id, "reason": ending.reason}),
            ))
            .await;
        return Ok(());
    }
    app.store
        .insert_call(&id, caller, to, kind, "ringing", now)
        .await?;
    let mut members = HashMap::new();
    members.insert(
        caller.to_string(),
        Member {
            session: Some(session.to_string()),
            ..Member::default()
        },
    );
    members.insert(to.to_string(), Member::default());
    app.calls.with(|live| {
        live.insert(
            id.clone(),
            LiveCall {
                caller: caller.to_string(),
                callee: to.to_string(),
                kind: kind.to_string(),
                state: State::Ringing,
                started_at: now,
                answered_at: None,
                members,
            },
        )
    });
    metrics::counter!("calls_placed_total").increment(1);
    let _ = device
        .push_wait(frame(&json!({"type": "call.created", "call_id": id})))
        .await;
    let incoming =
        frame(&json!({"type": "call.incoming", "call_id": id, "from": caller, "kind": kind}));
    if app.hub.send_to_user(to, &incoming, None) > 0 {
        app.hub.send_to_session(
            caller,
            session,
            &frame(&json!({"type": "call.ringing", "call_id": id})),
        );
    }
    Ok(())
}

/// A device of `user` connected: if a call rings for them, it rings there too.
pub fn on_connect(app: &App, user: &str, device: &Device) {
    let ringing: Vec<serde_json::Value> = app.calls.with(|live| {
        live.iter()
            .filter(|(_, c)| c.state == State::Ringing && c.callee == user)
            .map(|(id, c)| json!({"type": "call.incoming", "call_id": id, "from": c.caller, "kind": c.kind}))
            .collect()
    });
    for incoming in ringing {
        device.push(&frame(&incoming));
    }
}

/// `call.accept {"call_id"}` from a device of the callee.
pub async fn accept(app: &App, user: &str, session: &str, device: &Device, call_id: &str) {
    let now = app.now();
    let accepted = app.calls.with(|live| match live.get_mut(call_id) {
        Some(c) if c.callee == user && c.state == State::Ringing => {
            c.state = State::Active;
            c.answered_at = Some(now);
            if let Some(m) = c.members.get_mut(user) {
                m.session = Some(session.to_string());
            }
            Ok((c.caller.clone(), c.callee.clone()))
        }
        Some(c) if c.callee == user || c.caller == user => {
            Err(ApiError::conflict("the call is not ringing"))
        }
        _ => Err(ApiError::not_found()),
    });
    match accepted {
        Ok((caller, callee)) => {
            if let Err(e) = app.store.answer_call(call_id, now).await {
                tracing::warn!(cause = %e, "record answered call");
            }
            to_both(
                app,
                &caller,
                &callee,
                &json!({"type": "call.accepted", "call_id": call_id}),
            );
        }
        Err(e) => {
            let _ = device
                .push_wait(frame(&call_error(&e, Some(call_id), "call.accept")))
                .await;
        }
    }
}

/// `call.decline {"call_id"}`: the callee refuses a ringing call (in a running call: hangs up).
pub async fn decline(app: &App, user: &str, device: &Device, call_id: &str) {
    leave(app, user, device, call_id, "call.decline").await;
}

/// `call.hangup {"call_id"}`: cancels a ringing call (caller), declines it (callee), or ends it.
pub async fn hangup(app: &App, user: &str, device: &Device, call_id: &str) {
    leave(app, user, device, call_id, "call.hangup").await;
}

async fn leave(app: &App, user: &str, device: &Device, call_id: &str, via: &str) {
    let found = app.calls.with(|live| {
        live.get(call_id).map(|c| {
            (
                c.caller == user,
                c.callee == user,
                c.state,
                c.caller.clone(),
            )
        })
    });
    let ending = match found {
        Some((true, _, State::Ringing, _)) => Ending {
            reason: "cancelled",
            status: "cancelled",
        },
        Some((_, true, State::Ringing, caller)) => {
            app.hub.send_to_user(
                &caller,
                &frame(&json!({"type": "call.declined", "call_id": call_id})),
                None,
            );
            Ending {
                reason: "declined",
                status: "declined",
            }
        }
        Some((true, _, State::Active, _)) | Some((_, true, State::Active, _)) => Ending {
            reason: "hangup",
            status: "answered",
        },
        _ => {
            let _ = device
                .push_wait(frame(&call_error(
                    &ApiError::not_found(),
                    Some(call_id),
                    via,
                )))
                .await;
            return;
        }
    };
    end(app, call_id, ending).await;
}

/// Ends a call: tells both users, records it, and frees its SFU room.
async fn end(app: &App, call_id: &str, ending: Ending) {
    let Some(call) = app.calls.with(|live| live.remove(call_id)) else {
        return;
    };
    // Media stops first, so nobody hears or sees anything after being told the call ended.
    if let Some(sfu) = &app.sfu
        && let Err(e) = sfu.close_room(call_id).await
    {
        tracing::warn!(cause = %e, "close call room");
    }
    // Recorded before anyone is told, so history never lags behind what clients saw.
    if let Err(e) = app
        .store
        .end_call(call_id, ending.status, ending.reason, app.now())
        .await
    {
        tracing::warn!(cause = %e, "record ended call");
    }
    to_both(
        app,
        &call.caller,
        &call.callee,
        &json!({"type": "call.ended", "call_id": call_id, "reason": ending.reason}),
    );
    tracing::info!(call = call_id, reason = ending.reason, "call ended");
}

/// Ends calls that rang too long, and calls whose media failed (or never started) for too long.
pub async fn sweep(app: &App) {
    let now = app.now();
    let ring_ms = RING_TIMEOUT.as_millis() as i64;
    let grace_ms = MEDIA_GRACE.as_millis() as i64;
    let due: Vec<(String, Ending)> = app.calls.with(|live| {
        live.iter()
            .filter_map(|(id, c)| match c.state {
                State::Ringing if now - c.started_at >= ring_ms => Some((
                    id.clone(),
                    Ending {
                        reason: "timeout",
                        status: "missed",
                    },
                )),
                State::Active => {
                    let answered = c.answered_at.unwrap_or(now);
                    let stalled = c.members.values().any(|m| {
                        m.failed_since.is_some_and(|t| now - t >= grace_ms)
                            || (!m.connected && now - answered >= grace_ms)
                    });
                    stalled.then(|| {
                        (
                            id.clone(),
                            Ending {
                                reason: "failed",
                                status: "answered",
                            },
                        )
                    })
                }
                State::Ringing => None,
            })
            .collect()
    });
    for (id, ending) in due {
        end(app, &id, ending).await;
    }
}
