//! Operations endpoints: `/healthz` (the process serves), `/readyz` (every tenant's
//! log reader and source are connected now, else the reasons), `/metrics` (Prometheus text).

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

/// 200 `ready` or 503 `not ready`, then one line per reason (`TENANT: log|source: why`)
/// and per stalled Kafka partition (reported, but not a reason to leave the pool: a
/// partition nobody consumes is the whole group's problem, not this instance's).
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let mut reasons = String::new();
    let mut notes = String::new();
    for (name, t) in state.tenants.iter() {
        for reason in t.ready.reasons() {
            reasons.push_str(&format!("{name}: {reason}\n"));
        }
        for p in t.ready.stalled() {
            notes.push_str(&format!(
                "{name}: stalled partition {} of topic {}: committed offset {} unmoved for {} s, \
                 high watermark {} ({})\n",
                p.partition,
                t.config.topic,
                p.committed,
                p.stalled_secs,
                p.high_watermark,
                if p.assigned_here { "assigned to this instance" } else { "not assigned to this instance" },
            ));
        }
        if let (n @ 1.., Some(last)) = t.ready.log_gaps() {
            notes.push_str(&format!(
                "{name}: log lost entries already delivered (count {n}; last: {last}); see \
                 streamgate_log_gaps_total\n"
            ));
        }
    }
    if reasons.is_empty() {
        (StatusCode::OK, format!("ready\n{notes}"))
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, format!("not ready\n{reasons}{notes}"))
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
    let name = "streamgate_log_gaps_total";
    text.push_str(&format!(
        "# HELP {name} Times a tenant's log was found to have lost entries already delivered.\n\
         # TYPE {name} counter\n"
    ));
    for (tenant, t) in state.tenants.iter() {
        text.push_str(&format!("{name}{{tenant=\"{tenant}\"}} {}\n", t.ready.log_gaps().0));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}
