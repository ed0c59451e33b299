//! One WebSocket session: authenticate with the first frame, register the device, then read frames
//! and write the device's queue until either side goes away.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::time::Instant;

use super::frames::{ClientFrame, parse};
use super::hub::{Device, Outbound, Registration, frame};
use super::{chat, presence};
use crate::app::AppState;
use crate::calls;
use crate::http::error::ApiError;
use crate::http::extract::AuthUser;
use crate::http::views::MessageView;

/// Largest frame a client may send; larger ones close the socket with 1009.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;
/// Time a client has to authenticate.
const AUTH_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the server pings.
const PING_EVERY: Duration = Duration::from_secs(20);
/// A socket silent for this long (no frame, no pong) is dead and reaped.
const IDLE_LIMIT: Duration = Duration::from_secs(60);
/// How often the session behind a socket is re-checked (logout elsewhere ends the socket).
const SESSION_CHECK: Duration = Duration::from_secs(60);
/// Typing frames allowed per second (burst), per connection.
const TYPING_BURST: f64 = 5.0;

fn error_frame(code: &str, message: &str) -> Message {
    Message::Text(Utf8Bytes::from(
        json!({"type": "error", "code": code, "message": message}).to_string(),
    ))
}

async fn close(socket: &mut WebSocket, code: u16, reason: &'static str) {
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        })))
        .await;
}

/// Runs a session to its end.
pub async fn run(app: AppState, mut socket: WebSocket) {
    let Some(user) = authenticate(&app, &mut socket).await else {
        return;
    };
    let Registration {
        device,
        rx,
        kick,
        first,
    } = app.hub.register(&user.user_id, &user.session_id);
    metrics::gauge!("ws_devices").increment(1.0);
    tracing::debug!(user = %user.user_id, device = device.id, "device connected");

    let ready = json!({"type": "ready", "user_id": user.user_id});
    let _ = device.push_wait(frame(&ready)).await;
    if first {
        presence::announce(&app, &user.user_id, true, None).await;
    }
    for p in presence::snapshot(&app, &user.user_id).await {
        let _ = device.push_wait(frame(&p)).await;
    }
    calls::on_connect(&app, &user.user_id, &device);

    let (sink, stream) = socket.split();
    let mut writer = tokio::spawn(write_loop(sink, rx));
    read_loop(&app, &user, &device, stream, &kick).await;
    // Let the writer flush what is queued (a close frame, an error) before the socket drops.
    if tokio::time::timeout(Duration::from_secs(2), &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }

    if app.hub.unregister(&user.user_id, device.id) {
        let now = app.now();
        if let Err(e) = app.store.set_last_seen(&user.user_id, now).await {
            tracing::warn!(cause = %e, "last seen");
        }
        presence::announce(&app, &user.user_id, false, Some(now)).await;
    }
    metrics::gauge!("ws_devices").decrement(1.0);
    tracing::debug!(user = %user.user_id, device = device.id, "device disconnected");
}

/// Waits for the auth frame; on failure answers `error unauthorized` and closes with 4401.
async fn authenticate(app: &AppState, socket: &mut WebSocket) -> Option<AuthUser> {
    let first = tokio::time::timeout(AUTH_TIMEOUT, socket.recv()).await;
    let token = match first {
        Ok(Some(Ok(Message::Text(text)))) => serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .filter(|v| v["type"] == "auth")
            .and_then(|v| v["token"].as_str().map(String::from)),
        Ok(None | Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => return None,
        _ => None,
    };
    let user = match token {
        Some(t) => app.authenticate(&t).await.ok(),
        None => None,
    };
    if user.is_none() {
        let _ = socket
            .send(error_frame(
                "unauthorized",
                "the first frame must be {\"type\":\"auth\",\"token\":...} with a valid token",
            ))
            .await;
        close(socket, 4401, "unauthorized").await;
    }
    user
}

/// Writes queued frames and pings; ends when the queue closes or the socket fails.
async fn write_loop(
    mut sink: futures_util::stream::SplitSink<WebSocket, Message>,
    mut rx: tokio::sync::mpsc::Receiver<Outbound>,
) {
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    loop {
        tokio::select! {
            next = rx.recv() => match next {
                Some(Outbound::Text(text)) => {
                    if sink.send(Message::Text(Utf8Bytes::from(&*text))).await.is_err() {
                        break;
                    }
                }
                Some(Outbound::Close(code, reason)) => {
                    let close = CloseFrame { code, reason: Utf8Bytes::from_static(reason) };
                    let _ = sink.send(Message::Close(Some(close))).await;
                    break;
                }
                None => break,
            },
            _ = ping.tick() => {
                if sink.send(Message::Ping(Default::default())).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = sink.close().await;
}

async fn read_loop(
    app: &AppState,
    user: &AuthUser,
    device: &Device,
    mut stream: futures_util::stream::SplitStream<WebSocket>,
    kick: &tokio::sync::Notify,
) {
    let mut last_heard = Instant::now();
    let mut session_check = tokio::time::interval(SESSION_CHECK);
    session_check.tick().await;
    let mut typing_tokens = TYPING_BURST;
    let mut typing_refill = Instant::now();
    loop {
        let message = tokio::select! {
            m = stream.next() => m,
            _ = kick.notified() => {
                send_close(device, 4408, "disconnected by server (slow consumer or session ended)").await;
                break;
            }
            _ = tokio::time::sleep_until(last_heard + IDLE_LIMIT) => break,
            _ = session_check.tick() => {
                if app.authenticate_session(&user.session_id, &user.user_id).await.is_err() {
                    send_close(device, 4401, "session ended").await;
                    break;
                }
                continue;
            }
        };
        let Some(Ok(message)) = message else { break };
        last_heard = Instant::now();
        let text = match message {
            Message::Text(t) => t,
            Message::Binary(_) => {
                reply_error(device, "invalid_input", "frames must be JSON text").await;
                continue;
            }
            Message::Close(_) => break,
            Message::Ping(_) | Message::Pong(_) => continue,
        };
        if text.len() > MAX_FRAME_BYTES {
            send_close(device, 1009, "frame too large").await;
            break;
        }
        let frame = match parse(&text) {
            Ok(f) => f,
            Err((code, message)) => {
                reply_error(device, code, &message).await;
                continue;
            }
        };
        if let ClientFrame::Typing { .. } = frame {
            let now = Instant::now();
            typing_tokens = (typing_tokens
                + now.duration_since(typing_refill).as_secs_f64() * TYPING_BURST)
                .min(TYPING_BURST);
            typing_refill = now;
            if typing_tokens < 1.0 {
                reply_error(device, "rate_limited", "too many typing frames").await;
                continue;
            }
            typing_tokens -= 1.0;
        }
        handle(app, user, device, frame).await;
    }
}

/// Tells the client why, then asks the writer to close the socket after what is already queued.
async fn send_close(device: &Device, code: u16, reason: &'static str) {
    let _ = device
        .push_wait(frame(
            &json!({"type": "error", "code": "disconnected", "message": reason}),
        ))
        .await;
    device.close(code, reason).await;
}

async fn reply_error(device: &Device, code: &str, message: &str) {
    let _ = device
        .push_wait(frame(
            &json!({"type": "error", "code": code, "message": message}),
        ))
        .await;
}

async fn reply_api_error(device: &Device, e: &ApiError, extra: serde_json::Value) {
    let mut v = json!({"type": "error", "code": e.code(), "message": e.message()});
    if let (Some(obj), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
        obj.extend(extra.clone());
    }
    let _ = device.push_wait(frame(&v)).await;
}

async fn handle(app: &AppState, user: &AuthUser, device: &Device, frame_in: ClientFrame) {
    match frame_in {
        ClientFrame::MessageSend {
            to,
            client_id,
            body,
        } => match chat::send(app, &user.user_id, &to, &client_id, &body, Some(device.id)).await {
            Ok(sent) => {
                let ack = json!({"type": "message.ack", "client_id": client_id,
                        "message": MessageView::from(&sent.message)});
                let _ = device.push_wait(frame(&ack)).await;
            }
            Err(e) => {
                reply_api_error(
                    device,
                    &e,
                    json!({"client_id": client_id, "ref": "message.send"}),
                )
                .await
            }
        },
        ClientFrame::MessageRead { peer, up_to_seq } => {
            if let Err(e) = chat::read(app, &user.user_id, &peer, up_to_seq).await {
                reply_api_error(device, &e, json!({"ref": "message.read"})).await;
            }
        }
        ClientFrame::Typing { to, active } => {
            match app.store.may_signal(&user.user_id, &to).await {
                Ok(true) => {
                    let f =
                        frame(&json!({"type": "typing", "from": user.user_id, "active": active}));
                    app.hub.send_to_user(&to, &f, None);
                }
                Ok(false) => {
                    reply_api_error(device, &ApiError::not_found(), json!({"ref": "typing"})).await
                }
                Err(e) => reply_api_error(device, &e.into(), json!({"ref": "typing"})).await,
            }
        }
        ClientFrame::Sync { after } => {
            if let Err(e) = chat::sync(app, &user.user_id, device, &after).await {
                reply_api_error(device, &e, json!({"ref": "sync"})).await;
            }
        }
        ClientFrame::Ping => {
            let _ = device.push_wait(frame(&json!({"type": "pong"}))).await;
        }
        ClientFrame::CallInvite { to, kind } => {
            calls::invite(app, &user.user_id, &user.session_id, device, &to, &kind).await;
        }
        ClientFrame::CallAccept { call_id } => {
            calls::accept(app, &user.user_id, &user.session_id, device, &call_id).await;
        }
        ClientFrame::CallDecline { call_id } => {
            calls::decline(app, &user.user_id, device, &call_id).await
        }
        ClientFrame::CallHangup { call_id } => {
            calls::hangup(app, &user.user_id, device, &call_id).await
        }
        ClientFrame::SfuSignal { call_id, payload } => {
            calls::signal(
                app,
                &user.user_id,
                &user.session_id,
                device,
                &call_id,
                &payload,
            )
            .await;
        }
    }
}
