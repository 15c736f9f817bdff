//! The small web UI: the live taxi map (`/`), a waiting-queue user's page
//! (`/queue?user=u-0060`) and the operators' shadow deploy page (`/shadow`: a tenant's
//! diff over time, read from the admin API with the admin token), each one
//! self-contained page, and the map's outline of Seoul
//! (`/ui/seoul.geojson`, hand-drawn and approximate). Every asset is served from here: no
//! request leaves the page (no CDN, no tile server).

use axum::Router;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;

use super::AppState;

const MAP_PAGE: &str = include_str!("ui/index.html");
const QUEUE_PAGE: &str = include_str!("ui/queue.html");
const SHADOW_PAGE: &str = include_str!("ui/shadow.html");
const SEOUL: &str = include_str!("ui/seoul.geojson");

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Html(MAP_PAGE) }))
        .route("/queue", get(|| async { Html(QUEUE_PAGE) }))
        .route("/shadow", get(|| async { Html(SHADOW_PAGE) }))
        .route("/ui/seoul.geojson", get(seoul))
}

async fn seoul() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/geo+json"), (header::CACHE_CONTROL, "max-age=3600")], SEOUL)
}
