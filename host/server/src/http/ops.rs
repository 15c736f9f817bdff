//! Operations endpoints: `/healthz` (the process serves), `/readyz` (every tenant's
//! log reader is connected and caught up), `/metrics` (Prometheus text).

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use super::AppState;
use super::limits::Refusal;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let waiting: Vec<&str> =
        state.tenants.iter().filter(|(_, t)| !t.ready.is_cancelled()).map(|(n, _)| n.as_str()).collect();
    if waiting.is_empty() {
        (StatusCode::OK, "ready\n".to_string())
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, format!("waiting for the log of: {}\n", waiting.join(", ")))
    }
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut text = crate::metrics::render(state.tenants.values().map(|t| &*t.metrics));
    let name = "streamgate_http_refused_total";
    text.push_str(&format!(
        "# HELP {name} Requests refused by a [limits] setting, by reason.\n# TYPE {name} counter\n"
    ));
    for reason in Refusal::ALL {
        text.push_str(&format!(
            "{name}{{reason=\"{}\"}} {}\n",
            reason.as_str(),
            state.limits.refused(reason)
        ));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}
