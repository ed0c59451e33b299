//! `/api/conversations`: the conversation list, history pages, sending and read receipts over REST
//! (the WebSocket does the same in real time).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{ApiJson, ApiQuery, AuthUser};
use super::views::{MessageView, Profile};
use crate::app::AppState;
use crate::realtime::chat;
use crate::store::StoreError;

/// A peer: a profile plus the caller's name for them.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Peer {
    /// The profile.
    #[serde(flatten)]
    pub profile: Profile,
    /// The caller's contact name for this number, null when not in the contact book.
    pub contact_name: Option<String>,
}

/// An entry of the conversation list.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConversationView {
    /// Conversation id.
    pub id: String,
    /// The other participant.
    pub peer: Peer,
    /// The newest message.
    pub last_message: Option<MessageView>,
    /// Messages to the caller not yet read.
    pub unread_count: i64,
}

/// History page query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct PageQuery {
    /// Only messages with a smaller seq (scrolling back).
    pub before_seq: Option<i64>,
    /// Only messages with a larger seq (catching up).
    pub after_seq: Option<i64>,
    /// Page size, default 50, at most 200.
    pub limit: Option<i64>,
}

/// `POST .../messages` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct SendRequest {
    /// Idempotency key chosen by the client.
    pub client_id: String,
    /// Text, 1–4096 characters.
    pub body: String,
}

/// `POST .../read` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ReadRequest {
    /// The highest seq the caller has read.
    pub up_to_seq: i64,
}

/// The caller's conversations, most recent activity first.
#[utoipa::path(get, path = "/api/conversations", tag = "conversations", security(("bearer" = [])),
    responses((status = 200, body = [ConversationView]), (status = 401, body = ErrorBody)))]
pub async fn list(
    State(app): State<AppState>,
    user: AuthUser,
) -> ApiResult<axum::Json<Vec<ConversationView>>> {
    let summaries = app
        .store
        .conversation_list(&app.secrets.ring, &user.user_id)
        .await?;
    let contacts = app.store.contacts(&user.user_id).await?;
    let mut out = Vec::with_capacity(summaries.len());
    for s in summaries {
        let peer = app.store.user_any(&s.peer_id).await?;
        let contact_name = contacts
            .iter()
            .find(|c| c.user.as_ref().is_some_and(|u| u.id == peer.id))
            .map(|c| c.name.clone());
        out.push(ConversationView {
            id: s.id,
            peer: Peer {
                profile: Profile::of(&app, &peer),
                contact_name,
            },
            last_message: s.last_message.as_ref().map(MessageView::from),
            unread_count: s.unread,
        });
    }
    Ok(axum::Json(out))
}

/// A page of the conversation with a user, in `seq` order; empty for a peer never talked to.
#[utoipa::path(get, path = "/api/conversations/with/{user_id}/messages", tag = "conversations", security(("bearer" = [])),
    params(("user_id" = String, Path), PageQuery),
    responses((status = 200, body = [MessageView]), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
pub async fn messages(
    State(app): State<AppState>,
    user: AuthUser,
    Path(peer): Path<String>,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> ApiResult<axum::Json<Vec<MessageView>>> {
    let limit = page.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::invalid("limit must be 1-200"));
    }
    match app.store.user_any(&peer).await {
        Ok(_) => {}
        Err(StoreError::NotFound) => return Err(ApiError::not_found()),
        Err(e) => return Err(e.into()),
    }
    let Some(conversation) = app.store.conversation_between(&user.user_id, &peer).await? else {
        return Ok(axum::Json(Vec::new()));
    };
    let messages = app
        .store
        .messages_page(
            &app.secrets.ring,
            &conversation,
            page.before_seq,
            page.after_seq,
            limit,
        )
        .await?;
    Ok(axum::Json(messages.iter().map(MessageView::from).collect()))
}

/// Sends a message; idempotent on `client_id` (`200` with the earlier message). Answers only after commit.
#[utoipa::path(post, path = "/api/conversations/with/{user_id}/messages", tag = "conversations", security(("bearer" = [])),
    params(("user_id" = String, Path)), request_body = SendRequest,
    responses((status = 201, body = MessageView), (status = 200, body = MessageView), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn send(
    State(app): State<AppState>,
    user: AuthUser,
    Path(peer): Path<String>,
    ApiJson(req): ApiJson<SendRequest>,
) -> ApiResult<Response> {
    let sent = chat::send(&app, &user.user_id, &peer, &req.client_id, &req.body, None).await?;
    let status = if sent.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(MessageView::from(&sent.message))).into_response())
}

/// Marks the peer's messages read up to a seq.
#[utoipa::path(post, path = "/api/conversations/with/{user_id}/read", tag = "conversations", security(("bearer" = [])),
    params(("user_id" = String, Path)), request_body = ReadRequest,
    responses((status = 204, description = "marked"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn read(
    State(app): State<AppState>,
    user: AuthUser,
    Path(peer): Path<String>,
    ApiJson(req): ApiJson<ReadRequest>,
) -> ApiResult<StatusCode> {
    chat::read(&app, &user.user_id, &peer, req.up_to_seq).await?;
    Ok(StatusCode::NO_CONTENT)
}
