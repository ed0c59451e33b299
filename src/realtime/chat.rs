//! Chat logic shared by the WebSocket and the REST API: send (store, then fan out), read receipts,
//! delivery receipts and sync replay.

use std::collections::HashMap;

use serde_json::json;

use super::hub::frame;
use crate::app::App;
use crate::http::error::ApiError;
use crate::http::views::MessageView;
use crate::store::Sent;

/// Longest message body, in characters.
pub const MAX_BODY_CHARS: usize = 4096;
/// Longest client id.
pub const MAX_CLIENT_ID: usize = 64;
/// Messages per page of a sync replay.
const SYNC_PAGE: i64 = 200;

/// Validates and stores a message, then fans it out: `message.new` to every device of the recipient
/// and to the sender's other devices, then a delivery receipt when a recipient device took it.
/// `from_device` is the sending WebSocket, which gets its `message.ack` from the caller instead.
pub async fn send(
    app: &App,
    sender: &str,
    to: &str,
    client_id: &str,
    body: &str,
    from_device: Option<u64>,
) -> Result<Sent, ApiError> {
    if client_id.is_empty()
        || client_id.len() > MAX_CLIENT_ID
        || client_id.chars().any(char::is_control)
    {
        return Err(ApiError::invalid("client_id must be 1-64 characters"));
    }
    let chars = body.chars().count();
    if chars == 0 || chars > MAX_BODY_CHARS {
        return Err(ApiError::invalid("body must be 1-4096 characters"));
    }
    if to == sender {
        return Err(ApiError::invalid("cannot message yourself"));
    }
    match app.store.reachability(sender, to).await? {
        None => return Err(ApiError::not_found()),
        Some((true, _)) => {
            return Err(ApiError::forbidden(
                "this user does not accept your messages",
            ));
        }
        Some((_, true)) => {
            return Err(ApiError::forbidden(
                "you blocked this user; unblock them to send messages",
            ));
        }
        Some((false, false)) => {}
    }
    let sent = app
        .store
        .send_message(&app.secrets.ring, sender, to, client_id, body, app.now())
        .await?;
    if sent.created {
        fan_out_new(app, &sent, from_device).await;
    }
    Ok(sent)
}

async fn fan_out_new(app: &App, sent: &Sent, from_device: Option<u64>) {
    let m = &sent.message;
    let new = frame(&json!({"type": "message.new", "message": MessageView::from(m)}));
    app.hub.send_to_user(&m.sender_id, &new, from_device);
    if app.hub.send_to_user(&m.recipient_id, &new, None) > 0 {
        delivered(
            app,
            &m.recipient_id,
            &m.sender_id,
            &m.conversation_id,
            m.seq,
        )
        .await;
    }
}

/// Records that a device of `recipient` received messages up to `seq`, and tells both users.
async fn delivered(app: &App, recipient: &str, sender: &str, conversation_id: &str, seq: i64) {
    match app
        .store
        .mark_delivered(recipient, conversation_id, seq, app.now())
        .await
    {
        Ok(Some(up_to)) => {
            let status = frame(
                &json!({"type": "message.status", "conversation_id": conversation_id,
                "up_to_seq": up_to, "status": "delivered"}),
            );
            app.hub.send_to_user(sender, &status, None);
        }
        Ok(None) => {}
        // The message itself is safe; only the receipt is late, and the next sync or read fixes it.
        Err(e) => tracing::warn!(cause = %e, "could not record delivery"),
    }
}

/// Marks `peer`'s messages to `reader` read up to `up_to_seq` and tells both users' devices.
pub async fn read(app: &App, reader: &str, peer: &str, up_to_seq: i64) -> Result<(), ApiError> {
    if up_to_seq < 0 {
        return Err(ApiError::invalid("up_to_seq must be positive"));
    }
    let Some(conversation_id) = app.store.conversation_between(reader, peer).await? else {
        return Err(ApiError::not_found());
    };
    if let Some(up_to) = app
        .store
        .mark_read(reader, &conversation_id, up_to_seq, app.now())
        .await?
    {
        let status = frame(
            &json!({"type": "message.status", "conversation_id": conversation_id,
            "up_to_seq": up_to, "status": "read"}),
        );
        app.hub.send_to_user(peer, &status, None);
        app.hub.send_to_user(reader, &status, None);
    }
    Ok(())
}

/// Replays to one device every message newer than its per-conversation seqs (all of any conversation
/// it did not list), page by page with backpressure, then `sync.done`.
pub async fn sync(
    app: &App,
    user: &str,
    device: &super::Device,
    after: &HashMap<String, i64>,
) -> Result<(), ApiError> {
    for (conversation_id, peer, last_seq) in app.store.conversations_of(user).await? {
        let mut cursor = after.get(&conversation_id).copied().unwrap_or(0).max(0);
        let mut newest_to_me = None;
        while cursor < last_seq {
            let page = app
                .store
                .messages_page(
                    &app.secrets.ring,
                    &conversation_id,
                    None,
                    Some(cursor),
                    SYNC_PAGE,
                )
                .await?;
            let Some(last) = page.last() else { break };
            cursor = last.seq;
            for m in &page {
                if m.recipient_id == user {
                    newest_to_me = Some(m.seq);
                }
                let f = frame(&json!({"type": "message.new", "message": MessageView::from(m)}));
                if !device.push_wait(f).await {
                    return Ok(()); // the device went away; it will sync again
                }
            }
        }
        if let Some(seq) = newest_to_me {
            delivered(app, user, &peer, &conversation_id, seq).await;
        }
    }
    device.push_wait(frame(&json!({"type": "sync.done"}))).await;
    Ok(())
}
