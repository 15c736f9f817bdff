//! The small web UI: the live taxi map (`/`) and a waiting-queue user's page
//! (`/queue?user=u-0060`), each one self-contained page (no external assets).

use axum::Router;
use axum::response::Html;
use axum::routing::get;

use super::AppState;

const MAP_PAGE: &str = include_str!("ui/index.html");
const QUEUE_PAGE: &str = include_str!("ui/queue.html");

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Html(MAP_PAGE) }))
        .route("/queue", get(|| async { Html(QUEUE_PAGE) }))
}
