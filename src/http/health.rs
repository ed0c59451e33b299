//! Operations endpoints: liveness, readiness and Prometheus metrics.

use std::sync::OnceLock;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use super::error::ApiError;
use super::extract::ClientIp;
use crate::app::AppState;

/// The process-wide Prometheus recorder (metrics are global; several servers in one test process share it).
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ])
            .map(|b| b.build_recorder())
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
        let handle = recorder.handle();
        // Fails only if another recorder is installed already, in which case ours simply stays empty.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "alive")))]
pub async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({"status": "ok"}))
}

/// Readiness: the database answers.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "ready"), (status = 503, description = "database unavailable")))]
pub async fn readyz(State(app): State<AppState>) -> Response {
    match app.store.ping().await {
        Ok(()) => axum::Json(serde_json::json!({"status": "ready"})).into_response(),
        Err(e) => {
            tracing::warn!(cause = %e, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(serde_json::json!({"error": {"code": "unavailable", "message": "database unavailable"}})),
            )
                .into_response()
        }
    }
}

/// Prometheus metrics, for scrapers on this host or a private network only.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format"), (status = 403, description = "public client")))]
pub async fn metrics(
    State(app): State<AppState>,
    ClientIp(ip): ClientIp,
) -> Result<Response, ApiError> {
    let private = match ip {
        std::net::IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local(),
        std::net::IpAddr::V6(v6) => {
            v6.is_loopback() || v6.is_unique_local() || v6.is_unicast_link_local()
        }
    };
    if !private {
        return Err(ApiError::forbidden(
            "metrics are served to private networks only",
        ));
    }
    if let Some(sfu) = app.sfu.as_ref() {
        record_sfu(&sfu.stats().await);
    }
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        prometheus().render(),
    )
        .into_response())
}

/// The SFU's state and totals as of this scrape: the SFU keeps them itself (its packet path
/// touches no shared recorder), so they are read when asked for.
fn record_sfu(s: &mescon_media::SfuStats) {
    metrics::gauge!("sfu_rooms").set(s.rooms as f64);
    metrics::gauge!("sfu_participants").set(s.participants as f64);
    metrics::gauge!("sfu_connections").set(s.connections as f64);
    metrics::gauge!("sfu_routes", "by" => "ufrag").set(s.ufrag_routes as f64);
    metrics::gauge!("sfu_routes", "by" => "address").set(s.address_routes as f64);
    metrics::gauge!("sfu_ice_tcp_connections").set(s.tcp_connections as f64);
    metrics::gauge!("sfu_cached_packets").set(s.cached_packets as f64);
    metrics::counter!("sfu_media_received_packets_total", "way" => "uplink")
        .absolute(s.media_in.uplink);
    metrics::counter!("sfu_media_received_packets_total", "way" => "connection")
        .absolute(s.media_in.connection);
    metrics::counter!("sfu_media_refused_packets_total").absolute(s.media_in.refused);
    metrics::counter!("sfu_forwarded_packets_total").absolute(s.forward_delay.count());
    let r = &s.repairs;
    for (outcome, n) in [
        ("sent", r.sent),
        ("unmapped", r.unmapped),
        ("released", r.released),
        ("missing", r.missing),
    ] {
        metrics::counter!("sfu_repairs_total", "outcome" => outcome).absolute(n);
    }
    for (q, label) in [(0.5, "0.5"), (0.99, "0.99"), (0.999, "0.999")] {
        if let Some(d) = s.forward_delay.quantile(q) {
            metrics::gauge!("sfu_forward_delay_seconds", "quantile" => label).set(d.as_secs_f64());
        }
    }
}
