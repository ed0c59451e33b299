//! `/api/blocks`: users the caller has blocked.

use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::error::{ApiResult, ErrorBody};
use super::extract::AuthUser;
use super::views::Profile;
use crate::app::AppState;

/// The users the caller blocked.
#[utoipa::path(get, path = "/api/blocks", tag = "blocks", security(("bearer" = [])),
    responses((status = 200, body = [Profile]), (status = 401, body = ErrorBody)))]
pub async fn list(
    State(app): State<AppState>,
    user: AuthUser,
) -> ApiResult<axum::Json<Vec<Profile>>> {
    let users = app.store.blocked_users(&user.user_id).await?;
    Ok(axum::Json(
        users.iter().map(|u| Profile::of(&app, u)).collect(),
    ))
}

/// Blocks a user: their messages and calls to the caller are refused, presence is hidden both ways.
#[utoipa::path(put, path = "/api/blocks/{user_id}", tag = "blocks", security(("bearer" = [])), params(("user_id" = String, Path)),
    responses((status = 204, description = "blocked"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn block(
    State(app): State<AppState>,
    user: AuthUser,
    Path(target): Path<String>,
) -> ApiResult<StatusCode> {
    app.store.block(&user.user_id, &target, app.now()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Unblocks a user.
#[utoipa::path(delete, path = "/api/blocks/{user_id}", tag = "blocks", security(("bearer" = [])), params(("user_id" = String, Path)),
    responses((status = 204, description = "unblocked"), (status = 401, body = ErrorBody)))]
pub async fn unblock(
    State(app): State<AppState>,
    user: AuthUser,
    Path(target): Path<String>,
) -> ApiResult<StatusCode> {
    app.store.unblock(&user.user_id, &target).await?;
    Ok(StatusCode::NO_CONTENT)
}
