//! The HTTP edge: the axum router, one module per resource, the error JSON, security headers, metrics.

pub mod assets;
pub mod auth;
pub mod blocks;
pub mod calls;
pub mod contacts;
pub mod conversations;
pub mod error;
pub mod extract;
pub mod health;
pub mod ice;
pub mod me;
pub mod openapi;
pub mod users;
pub mod views;
pub mod ws;

use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};

use crate::app::AppState;
use error::ApiError;

/// The whole HTTP surface of the server.
pub fn router(app: AppState) -> Router {
    let api = Router::new()
        .route("/api/auth/otp", post(auth::request_otp))
        .route("/api/auth/verify", post(auth::verify))
        .route("/api/auth/refresh", post(auth::refresh))
        .route("/api/auth/logout", post(auth::logout))
        .route("/api/auth/logout-all", post(auth::logout_all))
        .route(
            "/api/me",
            get(me::get_me).patch(me::patch_me).delete(me::delete_me),
        )
        .route(
            "/api/me/avatar",
            put(me::put_avatar)
                .delete(me::delete_avatar)
                // The handler enforces the picture limit itself, see `me::read_bounded`.
                .layer(DefaultBodyLimit::disable()),
        )
        .route("/api/users/{id}/avatar", get(users::get_avatar))
        .route("/api/contacts", get(contacts::list).post(contacts::create))
        .route(
            "/api/contacts/{id}",
            get(contacts::get)
                .patch(contacts::update)
                .delete(contacts::delete),
        )
        .route("/api/blocks", get(blocks::list))
        .route(
            "/api/blocks/{user_id}",
            put(blocks::block).delete(blocks::unblock),
        )
        .route("/api/conversations", get(conversations::list))
        .route(
            "/api/conversations/with/{user_id}/messages",
            get(conversations::messages).post(conversations::send),
        )
        .route(
            "/api/conversations/with/{user_id}/read",
            post(conversations::read),
        )
        .route("/api/calls", get(calls::list))
        .route("/api/ws", get(ws::upgrade))
        .route("/api/ice-servers", get(ice::ice_servers))
        .route("/api/openapi.json", get(openapi::document))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics));

    api.fallback(assets::serve)
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(DefaultBodyLimit::max(app.config.limits.max_json_bytes))
        .layer(middleware::from_fn_with_state(
            app.clone(),
            security_headers,
        ))
        .layer(middleware::from_fn(record_metrics))
        .with_state(app)
}

/// Headers that make the browser refuse whole classes of attack: no framing, no sniffing, scripts and
/// styles only from this origin, no referrer leaks, camera and microphone for this origin only.
async fn security_headers(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; \
             media-src 'self' blob:; connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'; \
             form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        "permissions-policy",
        HeaderValue::from_static("camera=(self), microphone=(self), geolocation=(), payment=()"),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    if app.config.tls.is_some() {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    response
}

/// Request counts and latencies per route, for `/metrics`.
async fn record_metrics(request: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "other".to_string());
    let method = request.method().to_string();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [("method", method), ("route", route), ("status", status)];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels)
        .record(start.elapsed().as_secs_f64());
    response.into_response()
}
