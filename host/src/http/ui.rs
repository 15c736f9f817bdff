//! The small web UI: the live taxi map, one self-contained page (no external assets).

use axum::Router;
use axum::response::Html;
use axum::routing::get;

use super::AppState;

const MAP_PAGE: &str = include_str!("ui/index.html");

pub fn router() -> Router<AppState> {
    Router::new().route("/", get(|| async { Html(MAP_PAGE) }))
}
