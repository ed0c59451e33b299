//! `GET /api/ws`: the realtime WebSocket. The upgrade checks `Origin` (so another site open in the
//! user's browser cannot ride their session); authentication is the first frame, not a header,
//! because browsers cannot set headers on WebSocket requests.

use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::app::{App, AppState};
use crate::realtime::connection::{self, MAX_FRAME_BYTES};

/// Upgrades to the realtime protocol (see README: "Realtime protocol").
#[utoipa::path(get, path = "/api/ws", tag = "realtime",
    responses((status = 101, description = "switching to the WebSocket protocol"), (status = 403, description = "origin not allowed")))]
pub async fn upgrade(
    State(app): State<AppState>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    if !origin_allowed(&app, &headers) {
        return ApiError::forbidden("origin not allowed").into_response();
    }
    // The transport accepts somewhat more than the protocol allows, so an oversized frame reaches the
    // session, which closes with 1009 and a reason instead of a bare transport error.
    // Small socket buffers: most sockets idle, and 10,000 of them must fit in ~20 KB each; the
    // read buffer grows on demand for the rare large frame.
    ws.max_message_size(MAX_FRAME_BYTES * 4)
        .max_frame_size(MAX_FRAME_BYTES * 4)
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .on_upgrade(move |socket| connection::run(app, socket))
}

/// Same origin as the request's Host, the configured public URL, or an explicitly allowed origin.
/// Requests without `Origin` come from non-browser clients, which cannot carry a victim's session.
fn origin_allowed(app: &App, headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let Ok(url) = url::Url::parse(origin) else {
        return false;
    };
    let origin_host = match (url.host_str(), url.port_or_known_default()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        _ => return false,
    };
    let default_port = if url.scheme() == "https" { 443 } else { 80 };
    let same_host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(|h| {
            if h.contains(':') && !h.ends_with(']') {
                h.to_string()
            } else {
                format!("{h}:{default_port}")
            }
        })
        .is_some_and(|h| h.eq_ignore_ascii_case(&origin_host));
    let public = app
        .config
        .public_url
        .as_ref()
        .is_some_and(|u| u.origin() == url.origin());
    let listed = app.config.allowed_origins.iter().any(|o| {
        o.trim_end_matches('/')
            .eq_ignore_ascii_case(origin.trim_end_matches('/'))
    });
    same_host || public || listed
}
