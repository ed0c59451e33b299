//! `/api/users/{id}/avatar`: profile pictures, addressed by the signed URL found in profile objects.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::ApiQuery;
use crate::app::AppState;

/// The query of a signed avatar URL.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct AvatarQuery {
    /// Picture version (from the profile's `avatar_url`).
    pub v: Option<i64>,
    /// Signature (from the profile's `avatar_url`).
    pub sig: Option<String>,
}

/// The picture, when the URL's signature is valid (URLs come from profile objects, which only
/// authorized callers see) or the caller sends a valid bearer token.
#[utoipa::path(get, path = "/api/users/{id}/avatar", tag = "profile", params(("id" = String, Path), AvatarQuery),
    responses((status = 200, description = "the image", content_type = "image/png"), (status = 304, description = "not modified"),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_avatar(
    State(app): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<AvatarQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let signed = match (query.v, &query.sig) {
        (Some(v), Some(sig)) => bool::from(
            app.avatar_signature(&id, v)
                .as_bytes()
                .ct_eq(sig.as_bytes()),
        ),
        _ => false,
    };
    if !signed {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| ApiError::unauthorized("a signed URL or a bearer token is needed"))?;
        app.authenticate(token).await?;
    }
    let avatar = app.store.avatar(&id).await?;
    let etag = format!("\"{}\"", avatar.updated_at);
    let cache = if signed {
        // The URL changes with every upload, so a signed URL's content never changes.
        "private, max-age=31536000, immutable"
    } else {
        "private, no-cache"
    };
    let mut response = if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        == Some(etag.as_str())
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, avatar.content_type)], avatar.data).into_response()
    };
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    Ok(response)
}
