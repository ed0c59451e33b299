//! `/api/auth/*`: OTP request and verify, token refresh, logout.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{ApiJson, AuthUser, ClientIp};
use super::views::{Profile, valid_phone};
use crate::app::{App, AppState};
use crate::auth::otp::{OTP_TTL_SECS, RESEND_AFTER_SECS};
use crate::auth::tokens::{hash_refresh_token, new_refresh_token};
use crate::store::RefreshOutcome;

const COOKIE: &str = "mescon_refresh";

/// `POST /api/auth/otp` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct OtpRequest {
    /// The phone number, in any common form.
    pub phone: String,
}

/// `POST /api/auth/otp` answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OtpSent {
    /// Seconds the code stays valid.
    pub expires_in: u64,
    /// Seconds before another code may be requested.
    pub resend_after: u64,
}

/// `POST /api/auth/verify` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct VerifyRequest {
    /// The phone number the code was sent to.
    pub phone: String,
    /// The 6-digit code.
    pub code: String,
}

/// `POST /api/auth/refresh` and `/logout` body (optional for browsers, which send the cookie).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct RefreshRequest {
    /// The refresh token.
    pub refresh_token: Option<String>,
}

/// A new token pair.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenPair {
    /// Short-lived bearer token.
    pub access_token: String,
    /// Single-use token for `/api/auth/refresh`.
    pub refresh_token: String,
    /// Seconds until `access_token` expires.
    pub expires_in: u64,
    /// The signed-in user.
    pub user: Profile,
}

/// Sends a one-time code to a phone number.
#[utoipa::path(post, path = "/api/auth/otp", tag = "auth", request_body = OtpRequest,
    responses((status = 202, body = OtpSent), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody),
              (status = 502, description = "the OTP sender failed", body = ErrorBody)))]
pub async fn request_otp(
    State(app): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<OtpRequest>,
) -> ApiResult<Response> {
    let phone = valid_phone(&app, &req.phone)?;
    app.limits
        .otp_request(ip, &phone)
        .map_err(|l| ApiError::rate_limited(l.0.as_secs()))?;
    app.otp.request(&phone).await?;
    let body = OtpSent {
        expires_in: OTP_TTL_SECS,
        resend_after: RESEND_AFTER_SECS,
    };
    Ok((StatusCode::ACCEPTED, axum::Json(body)).into_response())
}

/// Checks the code; the first success creates the user. Returns a token pair and sets the refresh cookie.
#[utoipa::path(post, path = "/api/auth/verify", tag = "auth", request_body = VerifyRequest,
    responses((status = 200, body = TokenPair), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody),
              (status = 429, body = ErrorBody)))]
pub async fn verify(
    State(app): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    ApiJson(req): ApiJson<VerifyRequest>,
) -> ApiResult<Response> {
    app.limits
        .auth_attempt(ip)
        .map_err(|l| ApiError::rate_limited(l.0.as_secs()))?;
    let phone = valid_phone(&app, &req.phone)?;
    let code = req.code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::invalid("code must be 6 digits"));
    }
    app.otp.verify(&phone, code).await?;
    let now = app.now();
    let user = app.store.user_for_login(&phone, now).await?;
    let (refresh, hash) = new_refresh_token();
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .chars()
        .take(200)
        .collect::<String>();
    let expires_at = now + app.config.refresh_token_ttl.as_millis() as i64;
    let session_id = app
        .store
        .create_session(&user.id, &hash, &user_agent, now, expires_at)
        .await?;
    tracing::info!(user = %user.id, session = %session_id, "signed in");
    token_response(&app, &user.id, &session_id, refresh).await
}

/// Spends a refresh token (body or cookie) for a new pair. A spent token revokes its session.
#[utoipa::path(post, path = "/api/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, body = TokenPair), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn refresh(
    State(app): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    app.limits
        .auth_attempt(ip)
        .map_err(|l| ApiError::rate_limited(l.0.as_secs()))?;
    let token = presented_refresh(&headers, &body)?
        .ok_or_else(|| ApiError::unauthorized("no refresh token"))?;
    let (next, next_hash) = new_refresh_token();
    let now = app.now();
    match app
        .store
        .rotate_refresh(&hash_refresh_token(&token), &next_hash, now)
        .await?
    {
        RefreshOutcome::Rotated {
            session_id,
            user_id,
        } => token_response(&app, &user_id, &session_id, next).await,
        RefreshOutcome::Reused => {
            // The store revoked the session; its sockets notice within a minute (session re-check).
            tracing::warn!("refresh token reuse: session revoked");
            Err(ApiError::unauthorized(
                "refresh token reused; session revoked",
            ))
        }
        RefreshOutcome::Invalid => Err(ApiError::unauthorized("invalid refresh token")),
    }
}

/// Ends the session of a refresh token (body or cookie) and clears the cookie.
#[utoipa::path(post, path = "/api/auth/logout", tag = "auth", request_body = RefreshRequest,
    responses((status = 204, description = "logged out")))]
pub async fn logout(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    if let Some(token) = presented_refresh(&headers, &body)?
        && let Some(session) = app
            .store
            .session_of_refresh(&hash_refresh_token(&token))
            .await?
    {
        app.store.revoke_session(&session.id, app.now()).await?;
        app.hub.kick(&session.user_id, Some(&session.id));
    }
    Ok(with_cookie(
        StatusCode::NO_CONTENT.into_response(),
        &clear_cookie(&app),
    ))
}

/// Ends every session of the caller.
#[utoipa::path(post, path = "/api/auth/logout-all", tag = "auth", security(("bearer" = [])),
    responses((status = 204, description = "all sessions ended"), (status = 401, body = ErrorBody)))]
pub async fn logout_all(State(app): State<AppState>, user: AuthUser) -> ApiResult<Response> {
    app.store
        .revoke_all_sessions(&user.user_id, app.now())
        .await?;
    Ok(with_cookie(
        StatusCode::NO_CONTENT.into_response(),
        &clear_cookie(&app),
    ))
}

async fn token_response(
    app: &App,
    user_id: &str,
    session_id: &str,
    refresh: String,
) -> ApiResult<Response> {
    let user = app.store.user(user_id).await?;
    let access = app
        .tokens
        .issue_access(user_id, session_id, app.now())
        .map_err(|e| ApiError::internal("issue access token", &e))?;
    let cookie = refresh_cookie(app, &refresh);
    let body = TokenPair {
        access_token: access,
        refresh_token: refresh,
        expires_in: app.tokens.access_ttl_secs(),
        user: Profile::of(app, &user),
    };
    Ok(with_cookie(axum::Json(body).into_response(), &cookie))
}

/// The refresh token from the JSON body, else from the cookie. An empty body is fine; a malformed one is not.
fn presented_refresh(headers: &HeaderMap, body: &Bytes) -> ApiResult<Option<String>> {
    if !body.iter().all(u8::is_ascii_whitespace) {
        let req: RefreshRequest =
            serde_json::from_slice(body).map_err(|_| ApiError::invalid("malformed JSON"))?;
        if let Some(token) = req.refresh_token.filter(|t| !t.is_empty()) {
            return Ok(Some(token));
        }
    }
    let from_cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_string())
        .filter(|v| !v.is_empty());
    Ok(from_cookie)
}

fn secure(app: &App) -> &'static str {
    let https = app.config.tls.is_some()
        || app
            .config
            .public_url
            .as_ref()
            .is_some_and(|u| u.scheme() == "https");
    if https { "; Secure" } else { "" }
}

fn refresh_cookie(app: &App, token: &str) -> String {
    format!(
        "{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/api/auth; Max-Age={}{}",
        app.config.refresh_token_ttl.as_secs(),
        secure(app)
    )
}

fn clear_cookie(app: &App) -> String {
    format!(
        "{COOKIE}=; HttpOnly; SameSite=Strict; Path=/api/auth; Max-Age=0{}",
        secure(app)
    )
}

fn with_cookie(mut response: Response, cookie: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
