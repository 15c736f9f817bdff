//! The HTTP surface. Each module exposes `fn router() -> Router<AppState>`:
//! [`sse`] (events and snapshots), [`ops`] (health, readiness, metrics), [`ui`] (web UI),
//! [`admin`] (plugins and chains, behind a bearer token), [`demo`] (the simulated
//! queue's door, only under `streamgate demo`); [`listen`] accepts the connections and
//! writes event streams itself.

pub mod admin;
pub mod demo;
pub mod limits;
pub mod listen;
pub mod ops;
pub mod sse;
pub mod ui;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tokio_util::sync::CancellationToken;

use crate::tenant::TenantHandle;

#[derive(Clone)]
pub struct AppState {
    pub tenants: Arc<BTreeMap<String, Arc<TenantHandle>>>,
    /// SSE streams end when this is cancelled.
    pub cancel: CancellationToken,
    /// The admin API's token and chain control (`None`: no admin API).
    pub admin: Option<Arc<admin::AdminState>>,
    /// Stream and request limits, and what they refused.
    pub limits: Arc<limits::Limits>,
    /// The simulated queues' doors by tenant (`streamgate demo` only; empty otherwise).
    pub doors: Arc<BTreeMap<String, crate::source::simulate::Door>>,
}

impl AppState {
    pub fn tenant(&self, name: &str) -> Result<Arc<TenantHandle>, ApiError> {
        self.tenants.get(name).cloned().ok_or_else(|| ApiError::UnknownTenant(name.to_string()))
    }
}

/// Errors a client sees: a status and a one-line reason.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("unknown tenant {0:?}")]
    UnknownTenant(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("tenant {0:?} keeps no latest values (set latest_value = true in its config)")]
    NoLatestValues(String),
    #[error("{0}")]
    Auth(#[from] crate::auth::AuthError),
    #[error("refused by a limit: {}", .0.as_str())]
    Limited(limits::Refusal),
}

impl From<limits::Refusal> for ApiError {
    fn from(r: limits::Refusal) -> Self {
        ApiError::Limited(r)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Limited(refusal) = self {
            return refusal.into_response();
        }
        let status = match &self {
            ApiError::UnknownTenant(_) | ApiError::NoLatestValues(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Auth(e) if e.forbidden() => StatusCode::FORBIDDEN,
            ApiError::Auth(_) => StatusCode::UNAUTHORIZED,
            ApiError::Limited(_) => unreachable!("answered above"),
        };
        (status, format!("{self}\n")).into_response()
    }
}

pub fn router(state: AppState) -> Router {
    let demo = if state.doors.is_empty() { Router::new() } else { demo::router() };
    Router::new()
        .merge(sse::router())
        .merge(ops::router())
        .merge(ui::router())
        .merge(admin::router())
        .merge(demo)
        .layer(axum::middleware::from_fn_with_state(state.limits.clone(), limits::guard))
        .with_state(state)
}

#[cfg(test)]
mod tests;
