//! The operators' API under `/admin`, behind a bearer token: upload a plugin, set a
//! tenant's chain, roll it back, inspect it, shadow a candidate chain and promote it. Every change goes through the tenant's log
//! (see [`crate::control`]), so all instances switch at the same position.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;

use super::AppState;
use crate::control::auto_promote::AutoPromote;
use crate::control::{ChainControl, ControlError};
use streamgate_runtime::StageSpec;

use crate::policy::CatalogError;

/// What the admin routes need besides the tenants.
pub struct AdminState {
    /// `None`: the admin API is disabled.
    pub tokens: Option<crate::secrets::Rotating<Vec<String>>>,
    pub max_plugin_bytes: usize,
    pub control: Arc<ChainControl>,
}

pub fn router() -> Router<AppState> {
    Router::new()
        // The upload reads its body itself, within admin.max_plugin_bytes.
        .route("/admin/plugins", post(upload).layer(DefaultBodyLimit::disable()))
        .route("/admin/tenants/{tenant}", get(inspect))
        .route("/admin/tenants/{tenant}/chain", put(set_chain))
        .route("/admin/tenants/{tenant}/rollback", post(rollback))
        .route("/admin/tenants/{tenant}/shadow", get(shadow).post(start_shadow).delete(stop_shadow))
        .route("/admin/tenants/{tenant}/shadow/promote", post(promote_shadow))
}

/// An authorised admin request: the bearer token matched (401 without it, 403 when
/// no token is configured, so the API is off).
struct Admin(Arc<AdminState>);

impl FromRequestParts<AppState> for Admin {
    type Rejection = AdminError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let admin = state.admin.as_ref().ok_or(AdminError::Disabled)?;
        let expected = admin.tokens.as_ref().ok_or(AdminError::Disabled)?.current();
        let given = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(AdminError::NoToken)?;
        // Every token compared, in constant time each.
        let matched =
            expected.iter().fold(false, |ok, t| ok | constant_time_eq(given.trim().as_bytes(), t.as_bytes()));
        if !matched {
            return Err(AdminError::BadToken);
        }
        Ok(Admin(admin.clone()))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Debug, thiserror::Error)]
enum AdminError {
    #[error("the admin API is disabled on this instance; set admin.token or STREAMGATE_ADMIN_TOKEN")]
    Disabled,
    #[error("missing admin token: send `Authorization: Bearer <admin token>`")]
    NoToken,
    #[error("wrong admin token")]
    BadToken,
    #[error("{0}")]
    BadRequest(String),
    #[error("the component is larger than admin.max_plugin_bytes = {max}")]
    TooLarge { max: usize, unread: bool },
    #[error("{0}")]
    Control(#[from] ControlError),
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let status = match &self {
            AdminError::Disabled => StatusCode::FORBIDDEN,
            AdminError::NoToken | AdminError::BadToken => StatusCode::UNAUTHORIZED,
            AdminError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AdminError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            AdminError::Control(e) => match e {
                ControlError::UnknownTenant(_) => StatusCode::NOT_FOUND,
                ControlError::Rejected(CatalogError::Store(_)) => StatusCode::SERVICE_UNAVAILABLE,
                ControlError::Rejected(CatalogError::Missing(_)) => StatusCode::NOT_FOUND,
                ControlError::Rejected(_) => StatusCode::UNPROCESSABLE_ENTITY,
                ControlError::NothingToRollBack(_) | ControlError::NoShadow { .. } => StatusCode::CONFLICT,
                ControlError::InvalidGuard(_) => StatusCode::BAD_REQUEST,
                ControlError::Store(_) | ControlError::Bus(_) => StatusCode::SERVICE_UNAVAILABLE,
            },
        };
        if status.is_server_error() {
            tracing::error!(error = %self, "admin request failed");
        }
        let body = Json(serde_json::json!({ "error": self.to_string() }));
        if matches!(self, AdminError::TooLarge { unread: true, .. }) {
            // The body was left unread: this connection cannot carry another request.
            return (status, [(header::CONNECTION, "close")], body).into_response();
        }
        (status, body).into_response()
    }
}

#[derive(Deserialize)]
struct UploadParams {
    /// JSON config the plugin must accept (default: empty, the plugin's defaults).
    config: Option<String>,
}

async fn upload(
    Admin(admin): Admin,
    Query(params): Query<UploadParams>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, AdminError> {
    let max = admin.max_plugin_bytes;
    // Up to twice the limit is read and discarded, so the client sees a plain 413 on a
    // connection it may keep; more is refused from its announced length before a byte of
    // it is read (or once twice the limit has come, without a length), and the
    // connection closes.
    let drain = max.saturating_mul(2);
    let unread = AdminError::TooLarge { max, unread: true };
    let announced = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if announced.is_some_and(|n| n > drain as u64) {
        return Err(unread);
    }
    let body = axum::body::to_bytes(body, drain).await.map_err(|_| unread)?;
    if body.len() > max {
        return Err(AdminError::TooLarge { max, unread: false });
    }
    if body.is_empty() {
        return Err(AdminError::BadRequest("empty body: send the component's bytes".into()));
    }
    let uploaded = admin.control.upload(body, params.config.as_deref().unwrap_or("")).await?;
    let status = if uploaded.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(uploaded)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChainRequest {
    policies: Vec<StageSpec>,
}

fn chain_request(body: &[u8]) -> Result<ChainRequest, AdminError> {
    serde_json::from_slice(body).map_err(|e| {
        AdminError::BadRequest(format!(
            "body must be JSON like {{\"policies\": [{{\"plugin\": \"sha256:…\", \"config\": {{}}}}]}}: {e}"
        ))
    })
}

async fn set_chain(
    Admin(admin): Admin,
    Path(tenant): Path<String>,
    body: Bytes,
) -> Result<Response, AdminError> {
    let request = chain_request(&body)?;
    applied(admin.control.set_chain(&tenant, request.policies, "set through the admin API").await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShadowRequest {
    policies: Vec<StageSpec>,
    /// Promote by itself once the diff stays within this budget.
    auto_promote: Option<AutoPromote>,
}

async fn start_shadow(
    Admin(admin): Admin,
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    body: Bytes,
) -> Result<Response, AdminError> {
    let request: ShadowRequest = serde_json::from_slice(&body).map_err(|e| {
        AdminError::BadRequest(format!(
            "body must be JSON like {{\"policies\": [{{\"plugin\": \"sha256:…\", \"config\": {{}}}}], \
             \"auto_promote\": {{\"max_rate\": 0.001, \"for_ms\": 600000}}}} (auto_promote optional): {e}"
        ))
    })?;
    if let Some(guard) = &request.auto_promote {
        guard.check()?;
    }
    let started = admin.control.start_shadow(&tenant, request.policies).await?;
    if let Some(guard) = request.auto_promote {
        let control = admin.control.clone();
        control.auto_promote(tenant, guard, started.position.clone(), state.cancel.clone());
    }
    shadow_applied(started)
}

async fn stop_shadow(Admin(admin): Admin, Path(tenant): Path<String>) -> Result<Response, AdminError> {
    shadow_applied(admin.control.stop_shadow(&tenant).await?)
}

async fn promote_shadow(Admin(admin): Admin, Path(tenant): Path<String>) -> Result<Response, AdminError> {
    applied(admin.control.promote_shadow(&tenant).await?)
}

async fn shadow(Admin(admin): Admin, Path(tenant): Path<String>) -> Result<Response, AdminError> {
    Ok(Json(admin.control.shadow(&tenant)?).into_response())
}

/// 200 once this instance acted; 202 if it has not yet (the entry is in the log).
fn shadow_applied(a: crate::control::shadow::ShadowApplied) -> Result<Response, AdminError> {
    let status = if a.applied { StatusCode::OK } else { StatusCode::ACCEPTED };
    Ok((status, Json(a)).into_response())
}

async fn rollback(Admin(admin): Admin, Path(tenant): Path<String>) -> Result<Response, AdminError> {
    applied(admin.control.rollback(&tenant).await?)
}

/// 200 once this instance switched; 202 if it has not yet (the change is in the log).
fn applied(a: crate::control::Applied) -> Result<Response, AdminError> {
    let status = if a.applied { StatusCode::OK } else { StatusCode::ACCEPTED };
    Ok((status, Json(a)).into_response())
}

async fn inspect(Admin(admin): Admin, Path(tenant): Path<String>) -> Result<Response, AdminError> {
    Ok(Json(admin.control.inspect(&tenant).await?).into_response())
}
