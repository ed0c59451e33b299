//! `/api/me`: the caller's own profile, picture and account.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::Deserialize;

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{ApiJson, AuthUser};
use super::views::{Profile, valid_name};
use crate::app::AppState;
use crate::avatar;

/// `PATCH /api/me` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ProfilePatch {
    /// New display name, 1–64 characters after trimming.
    pub display_name: String,
}

/// The caller's profile.
#[utoipa::path(get, path = "/api/me", tag = "profile", security(("bearer" = [])),
    responses((status = 200, body = Profile), (status = 401, body = ErrorBody)))]
pub async fn get_me(State(app): State<AppState>, user: AuthUser) -> ApiResult<axum::Json<Profile>> {
    let me = app.store.user(&user.user_id).await?;
    Ok(axum::Json(Profile::of(&app, &me)))
}

/// Changes the display name.
#[utoipa::path(patch, path = "/api/me", tag = "profile", security(("bearer" = [])), request_body = ProfilePatch,
    responses((status = 200, body = Profile), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn patch_me(
    State(app): State<AppState>,
    user: AuthUser,
    ApiJson(patch): ApiJson<ProfilePatch>,
) -> ApiResult<axum::Json<Profile>> {
    let name = valid_name(&patch.display_name, "display_name")?;
    let me = app.store.set_display_name(&user.user_id, &name).await?;
    Ok(axum::Json(Profile::of(&app, &me)))
}

/// Deletes the account: profile, picture, contacts and sessions. Messages stay readable by their peers.
#[utoipa::path(delete, path = "/api/me", tag = "profile", security(("bearer" = [])),
    responses((status = 204, description = "deleted"), (status = 401, body = ErrorBody)))]
pub async fn delete_me(State(app): State<AppState>, user: AuthUser) -> ApiResult<StatusCode> {
    app.store.delete_user(&user.user_id, app.now()).await?;
    app.hub.kick(&user.user_id, None);
    tracing::info!(user = %user.user_id, "account deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// Uploads a picture (raw PNG, JPEG or WebP body, at most 5 MiB); it is decoded, bounded and re-encoded.
#[utoipa::path(put, path = "/api/me/avatar", tag = "profile", security(("bearer" = [])),
    request_body(content = Vec<u8>, content_type = "image/png"),
    responses((status = 200, body = Profile), (status = 401, body = ErrorBody), (status = 413, body = ErrorBody),
              (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn put_avatar(
    State(app): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<axum::Json<Profile>> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    let format = avatar::declared_format(&content_type).ok_or_else(|| {
        ApiError::unsupported_media("Content-Type must be image/png, image/jpeg or image/webp")
    })?;
    let body = read_bounded(&headers, body, app.config.limits.max_avatar_bytes).await?;
    // Decoding is CPU work of unbounded duration for the async runtime: keep it off the reactor threads.
    let encoded = tokio::task::spawn_blocking(move || avatar::normalize(&body, format))
        .await
        .map_err(|e| ApiError::internal("avatar task", &e))?
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    let me = app
        .store
        .set_avatar(
            &user.user_id,
            encoded.content_type,
            &encoded.data,
            app.now(),
        )
        .await?;
    Ok(axum::Json(Profile::of(&app, &me)))
}

/// Reads at most `limit` bytes of body. A larger body is `413`, but only after reading (and discarding)
/// a bounded amount more: an HTTP/1.1 client still sending when the answer comes would see a reset
/// connection instead of the `413`.
async fn read_bounded(headers: &HeaderMap, body: Body, limit: usize) -> ApiResult<Vec<u8>> {
    let too_large = || ApiError::too_large("pictures are limited to 5 MiB");
    let drain_cap = limit.saturating_mul(4);
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > drain_cap) {
        return Err(too_large());
    }
    let mut data = Vec::with_capacity(declared.unwrap_or(0).min(limit));
    let mut seen = 0usize;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| ApiError::invalid("could not read the body"))?;
        seen += chunk.len();
        if seen > drain_cap {
            break;
        }
        if seen <= limit {
            data.extend_from_slice(&chunk);
        }
    }
    if seen > limit {
        return Err(too_large());
    }
    Ok(data)
}

/// Removes the picture.
#[utoipa::path(delete, path = "/api/me/avatar", tag = "profile", security(("bearer" = [])),
    responses((status = 200, body = Profile), (status = 401, body = ErrorBody)))]
pub async fn delete_avatar(State(app): State<AppState>, user: AuthUser) -> ApiResult<Response> {
    let me = app.store.delete_avatar(&user.user_id).await?;
    Ok(axum::Json(Profile::of(&app, &me)).into_response())
}
