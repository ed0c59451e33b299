//! `/api/calls`: the caller's call history.

use axum::extract::State;
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{ApiQuery, AuthUser};
use super::views::Profile;
use crate::app::AppState;
use crate::clock::rfc3339;

/// History query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct CallsQuery {
    /// How many calls, newest first (default 50, at most 200).
    pub limit: Option<i64>,
}

/// One call of the history.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CallView {
    /// Call id.
    pub id: String,
    /// The other participant.
    pub peer: Profile,
    /// `audio` or `video`.
    pub kind: String,
    /// `incoming` or `outgoing`, from the caller's point of view.
    pub direction: String,
    /// `missed`, `declined`, `answered`, `cancelled` or `failed` (`ringing`/`active` while live).
    pub status: String,
    /// RFC 3339.
    pub started_at: String,
    /// RFC 3339, when answered.
    pub answered_at: Option<String>,
    /// RFC 3339, when it ended.
    pub ended_at: Option<String>,
}

/// The caller's calls, newest first.
#[utoipa::path(get, path = "/api/calls", tag = "calls", security(("bearer" = [])), params(CallsQuery),
    responses((status = 200, body = [CallView]), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list(
    State(app): State<AppState>,
    user: AuthUser,
    ApiQuery(query): ApiQuery<CallsQuery>,
) -> ApiResult<axum::Json<Vec<CallView>>> {
    let limit = query.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::invalid("limit must be 1-200"));
    }
    let records = app.store.calls_of(&user.user_id, limit).await?;
    let mut out = Vec::with_capacity(records.len());
    for r in records {
        let outgoing = r.caller_id == user.user_id;
        let peer_id = if outgoing { &r.callee_id } else { &r.caller_id };
        let peer = app.store.user_any(peer_id).await?;
        out.push(CallView {
            id: r.id,
            peer: Profile::of(&app, &peer),
            kind: r.kind,
            direction: if outgoing { "outgoing" } else { "incoming" }.to_string(),
            status: r.status,
            started_at: rfc3339(r.started_at),
            answered_at: r.answered_at.map(rfc3339),
            ended_at: r.ended_at.map(rfc3339),
        });
    }
    Ok(axum::Json(out))
}
