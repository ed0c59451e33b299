//! `GET /api/ice-servers`: the STUN and TURN servers a browser should give its RTCPeerConnection,
//! with TURN REST credentials for the caller that the embedded TURN server accepts for an hour.

use axum::extract::State;
use axum::http::{HeaderMap, Uri, header};
use serde::Serialize;

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::AuthUser;
use crate::app::AppState;

/// How long minted TURN credentials stay valid, in seconds.
pub const CREDENTIAL_TTL_SECS: i64 = 3600;

/// One entry of `RTCConfiguration.iceServers`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IceServer {
    /// `stun:host:port`, or `turn:host:port?transport=udp|tcp`.
    pub urls: Vec<String>,
    /// TURN REST username `<expiry-unix>:<user_id>` (TURN entries only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// `base64(HMAC-SHA1(secret, username))` (TURN entries only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// The answer of `GET /api/ice-servers`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IceServers {
    /// Empty when the embedded TURN server is off.
    pub ice_servers: Vec<IceServer>,
    /// Seconds the credentials stay valid; fetch again before starting a call after that.
    pub ttl: i64,
}

/// STUN and TURN servers with fresh TURN credentials for the caller.
#[utoipa::path(get, path = "/api/ice-servers", tag = "calls", security(("bearer" = [])),
    responses((status = 200, body = IceServers), (status = 401, body = ErrorBody)))]
pub async fn ice_servers(
    State(app): State<AppState>,
    user: AuthUser,
    uri: Uri,
    headers: HeaderMap,
) -> ApiResult<axum::Json<IceServers>> {
    let Some(turn) = app.config.turn_listen else {
        return Ok(axum::Json(IceServers {
            ice_servers: Vec::new(),
            ttl: CREDENTIAL_TTL_SECS,
        }));
    };
    let host = advertised_host(&app, &uri, &headers)?;
    let authority = format!("{host}:{}", turn.port());
    let credential = crate::turn::mint(
        &app.secrets.turn,
        &user.user_id,
        app.now().div_euclid(1000),
        CREDENTIAL_TTL_SECS,
    );
    Ok(axum::Json(IceServers {
        ice_servers: vec![
            IceServer {
                urls: vec![format!("stun:{authority}")],
                username: None,
                credential: None,
            },
            IceServer {
                urls: vec![
                    format!("turn:{authority}?transport=udp"),
                    format!("turn:{authority}?transport=tcp"),
                ],
                username: Some(credential.username),
                credential: Some(credential.password),
            },
        ],
        ttl: CREDENTIAL_TTL_SECS,
    }))
}

/// The host clients reach us at: the first public IP, else the public URL's host, else the Host
/// header of this request (HTTP/2: its authority) without the port, bracketed when IPv6.
fn advertised_host(app: &AppState, uri: &Uri, headers: &HeaderMap) -> ApiResult<String> {
    if let Some(ip) = app.config.public_ips.first() {
        return Ok(bracket(&ip.to_string()));
    }
    if let Some(host) = app.config.public_url.as_ref().and_then(|u| u.host_str()) {
        // url already brackets IPv6 hosts.
        return Ok(host.to_string());
    }
    let raw = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
        .ok_or_else(|| ApiError::invalid("a Host header is required"))?;
    host_without_port(raw).ok_or_else(|| ApiError::invalid("malformed Host header"))
}

fn bracket(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// `example.org:8000` → `example.org`, `[::1]:8000` → `[::1]`; None for what is not a host.
fn host_without_port(raw: &str) -> Option<String> {
    let raw = raw.trim();
    let host = if let Some(rest) = raw.strip_prefix('[') {
        let (inside, _) = rest.split_once(']')?;
        inside.parse::<std::net::Ipv6Addr>().ok()?;
        format!("[{inside}]")
    } else {
        raw.split(':').next().unwrap_or_default().to_string()
    };
    let ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'));
    ok.then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_header_loses_its_port() {
        assert_eq!(
            host_without_port("chat.example.org:8000").as_deref(),
            Some("chat.example.org")
        );
        assert_eq!(host_without_port("127.0.0.1").as_deref(), Some("127.0.0.1"));
        assert_eq!(host_without_port("[::1]:8000").as_deref(), Some("[::1]"));
        assert_eq!(host_without_port("[nonsense]:1"), None);
        assert_eq!(host_without_port("evil host/"), None);
        assert_eq!(host_without_port(""), None);
        assert_eq!(bracket("2001:db8::1"), "[2001:db8::1]");
    }
}
