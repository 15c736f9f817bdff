//! Demo-only endpoints, routed only when a simulator with a door runs (`streamgate
//! demo`): `POST /demo/{tenant}/join` lets a new user into the simulated waiting queue.

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/demo/{tenant}/join", post(join))
}

/// A new user at the back of the line: `201 {"userId":"u-3001"}`. Their first rank comes
/// on the next tick through the tenant's stream (`?key=u-3001`), like everyone else's.
async fn join(State(state): State<AppState>, Path(tenant): Path<String>) -> Response {
    let Some(door) = state.doors.get(&tenant) else {
        let known: Vec<&str> = state.doors.keys().map(String::as_str).collect();
        let reason =
            format!("tenant {tenant:?} has no simulated queue to join; these have: {}\n", known.join(", "));
        return (StatusCode::NOT_FOUND, reason).into_response();
    };
    match door.join() {
        Ok(user) => (StatusCode::CREATED, Json(serde_json::json!({ "userId": user }))).into_response(),
        Err(busy) => (StatusCode::SERVICE_UNAVAILABLE, format!("{busy}\n")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::Request;
    use tokio_util::sync::CancellationToken;
    use tower::ServiceExt;

    use super::*;
    use crate::source::simulate::{QueueSim, Simulator};

    fn app(sim: Option<&QueueSim>) -> axum::Router {
        let doors = sim.map(|s| ("queue".to_string(), s.door())).into_iter().collect();
        super::super::router(AppState {
            tenants: Default::default(),
            cancel: CancellationToken::new(),
            admin: None,
            limits: Arc::new(super::super::limits::Limits::new(Default::default())),
            doors: Arc::new(doors),
        })
    }

    async fn post(app: &axum::Router, uri: &str) -> (StatusCode, String) {
        let req = Request::post(uri).body(Body::empty()).unwrap();
        let res = app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let body = axum::body::to_bytes(res.into_body(), 1 << 16).await.unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn join_gives_a_new_user_who_gets_a_rank_on_the_next_tick() {
        let mut sim = QueueSim::new(10, 1);
        let app = app(Some(&sim));
        for now in [1_000, 2_000, 3_000] {
            sim.tick(now);
        }
        let (status, body) = post(&app, "/demo/queue/join").await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
        let user = answer["userId"].as_str().unwrap();
        assert_eq!(user, "u-0010", "the id after the crowd's ten");
        let next = sim.tick(4_000);
        let ranked = next.iter().any(|raw| {
            let e: serde_json::Value = serde_json::from_slice(raw).unwrap();
            e["userId"] == user && e["kind"] == "rank"
        });
        assert!(ranked, "{user} has a rank after the next tick");
        let (status, body) = post(&app, "/demo/taxi/join").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(body.contains("no simulated queue") && body.contains("queue"), "{body}");
    }

    #[tokio::test]
    async fn without_a_simulated_queue_there_is_no_join_endpoint() {
        let (status, _) = post(&app(None), "/demo/queue/join").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}
