//! `GET /tenants/{tenant}/events` (Server-Sent Events) and `GET /tenants/{tenant}/snapshot`.
//!
//! Frames are pre-serialised by the hub and written as they are: one allocation per
//! frame, however many clients. `?key=K` (repeatable) limits a client to those keys,
//! routed in the hub. A client resumes with `Last-Event-ID` (or `?lastEventId=`) on any
//! instance, since ids are log positions. A client that falls behind its buffer, or
//! resumes from before the history ring, is counted and, for latest-value tenants, sent
//! the newest state (of its keys) in one frame instead of the frames it missed.
//!
//! Wire: each frame is `event: NAME`, `id: POSITION`, `data: [payloads]`. When the
//! policy chain expired keys at that position (latest-value tenants), the frame starts
//! with `event: NAME-expired`, `data: ["key",...]` (the key strings): the client drops
//! those keys before applying the payloads. The `id:` is on the frame's last event, so
//! an expiry alone carries it itself; ids stay strictly increasing and a removal is
//! replayed on resume like any frame.
//!
//! On shutdown (the server's cancel token, see [`end_streams_at`]) each stream ends with
//! [`SHUTDOWN_HINT`]: a comment and a short `retry:`, so an `EventSource` reconnects at
//! once, through the load balancer to another instance, and resumes there from its
//! `Last-Event-ID`. The token closes every tenant's hub; a client learns of it as the end
//! of its live feed, so no client polls the token (a lock every client shares).

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

use super::limits::{ClientIp, StreamPermit};
use super::{ApiError, AppState};
use crate::auth::Grant;
use crate::bus::LogPosition;
use crate::hub::{Frame, Live};
use crate::tenant::TenantHandle;

const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// The last bytes of every stream when the instance shuts down.
pub const SHUTDOWN_HINT: &[u8] = b": shutting down; reconnect to resume from your last id\nretry: 250\n\n";
/// Most `key` parameters one client may give.
const MAX_KEYS: usize = 1_000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/tenants/{tenant}/events", get(events))
        .route("/tenants/{tenant}/snapshot", get(snapshot))
}

/// `?key=` (repeatable), `?lastEventId=` and `?token=`.
#[derive(Default)]
struct EventsQuery {
    keys: Vec<String>,
    last_event_id: Option<String>,
    token: Option<String>,
}

impl EventsQuery {
    fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        let mut q = EventsQuery::default();
        for (name, value) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            match &*name {
                "key" if value.is_empty() => {
                    return Err(ApiError::BadRequest("key must not be empty".into()));
                }
                "key" => q.keys.push(value.into_owned()),
                "lastEventId" => q.last_event_id = Some(value.into_owned()),
                "token" => q.token = Some(value.into_owned()),
                _ => {}
            }
        }
        if q.keys.len() > MAX_KEYS {
            return Err(ApiError::BadRequest(format!(
                "at most {MAX_KEYS} key parameters, got {}",
                q.keys.len()
            )));
        }
        Ok(q)
    }
}

/// The one answer to a `Last-Event-ID` that is not a log position.
fn malformed_id(why: impl std::fmt::Display) -> String {
    format!("Last-Event-ID: {why}")
}

async fn events(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    RawQuery(raw): RawQuery,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let tenant = state.tenant(&tenant)?;
    let mut query = EventsQuery::parse(raw.as_deref())?;
    query.keys = authorize(&tenant, &headers, query.token.as_deref(), query.keys)?;
    // A header that is not visible ASCII is as malformed as any other bad id: refused,
    // never ignored (ignoring it would replay the whole stream).
    let header_id = headers
        .get("last-event-id")
        .map(|v| v.to_str().map(str::to_string))
        .transpose()
        .map_err(|_| ApiError::BadRequest(malformed_id("not ASCII text")))?;
    let resume = header_id
        .or(query.last_event_id)
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.parse::<LogPosition>().map_err(|e| ApiError::BadRequest(malformed_id(e))))
        .transpose()?;
    let keys = (!query.keys.is_empty()).then_some(query.keys);
    let sub = tenant.hub.subscribe(resume, keys.clone(), tenant.config.snapshot_on_connect);
    if sub.gap {
        tenant.metrics.sse_lagged.fetch_add(1, Relaxed);
    }
    let mut backlog: VecDeque<Bytes> = VecDeque::new();
    backlog.push_back(Bytes::from_static(b"retry: 1000\n\n"));
    // Ids only move forward on the wire: a catch-up state (at the newest position)
    // replaces the older frames it already covers.
    let mut last_sent = resume;
    let catch_up = match &keys {
        _ if !sub.gap => None,
        None => tenant.hub.conflated_frame(resume),
        Some(keys) => tenant.hub.current_frame_of(keys),
    };
    for frame in catch_up.iter().chain(&sub.backlog) {
        if last_sent.is_none_or(|p| frame.position > p) {
            last_sent = Some(frame.position);
            backlog.push_back(frame.wire.clone());
        }
    }
    let permit = state.limits.open_stream(ip)?;
    state.limits.open_tenant_stream(&tenant.metrics.sse_clients)?;
    let client = Client::new(backlog, sub.live, last_sent, ClientGuard(tenant.clone()), permit);
    let stream = futures::stream::unfold(client, |mut c| async move {
        let bytes = c.next().await?;
        Some((Ok::<_, Infallible>(bytes), c))
    });
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// Decrements the client gauge when the stream is dropped.
struct ClientGuard(Arc<TenantHandle>);

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.metrics.sse_clients.fetch_sub(1, Relaxed);
    }
}

struct Client {
    backlog: VecDeque<Bytes>,
    live: Live,
    last_sent: Option<LogPosition>,
    guard: ClientGuard,
    /// This stream's slot in its address's count.
    _permit: StreamPermit,
    /// Fires at most every [`KEEP_ALIVE`]; a frame only notes its time in `last_write`,
    /// so frames never touch the timer wheel.
    keep_alive: Pin<Box<Sleep>>,
    last_write: Instant,
    /// The shutdown hint went out: the next call ends the stream.
    ended: bool,
}

impl Client {
    fn new(
        backlog: VecDeque<Bytes>,
        live: Live,
        last_sent: Option<LogPosition>,
        guard: ClientGuard,
        permit: StreamPermit,
    ) -> Self {
        let now = Instant::now();
        Client {
            backlog,
            live,
            last_sent,
            guard,
            _permit: permit,
            keep_alive: Box::pin(tokio::time::sleep_until(now + KEEP_ALIVE)),
            last_write: now,
            ended: false,
        }
    }

    /// The next bytes for this client; `None` ends the stream.
    async fn next(&mut self) -> Option<Bytes> {
        if self.ended {
            return None;
        }
        if let Some(b) = self.backlog.pop_front() {
            self.last_write = Instant::now();
            return Some(b);
        }
        loop {
            let received = tokio::select! {
                biased;
                r = recv(&mut self.live) => r,
                _ = &mut self.keep_alive => {
                    let due = self.last_write + KEEP_ALIVE;
                    let now = Instant::now();
                    if due > now {
                        self.keep_alive.as_mut().reset(due);
                        continue;
                    }
                    self.keep_alive.as_mut().reset(now + KEEP_ALIVE);
                    self.last_write = now;
                    return Some(Bytes::from_static(b": keep-alive\n\n"));
                }
            };
            match received {
                Ok(frame) => {
                    if self.last_sent.is_some_and(|p| frame.position <= p) {
                        continue;
                    }
                    self.last_sent = Some(frame.position);
                    self.last_write = Instant::now();
                    return Some(frame.wire.clone());
                }
                Err(RecvError::Lagged(skipped)) => {
                    let tenant = &self.guard.0;
                    tenant.metrics.sse_lagged.fetch_add(1, Relaxed);
                    tracing::debug!(tenant = %tenant.config.name, skipped, "slow SSE client skipped frames");
                    if let Some(state) = tenant.hub.conflated_frame(self.last_sent) {
                        self.last_sent = Some(state.position);
                        self.last_write = Instant::now();
                        return Some(state.wire.clone());
                    }
                }
                // The hub closed: the instance is shutting down.
                Err(RecvError::Closed) => {
                    self.ended = true;
                    return Some(Bytes::from_static(SHUTDOWN_HINT));
                }
            }
        }
    }
}

/// Closes every tenant's hub when `cancel` fires, so that every event stream ends with
/// [`SHUTDOWN_HINT`] (after what it had queued).
pub async fn end_streams_at(cancel: CancellationToken, tenants: Arc<BTreeMap<String, Arc<TenantHandle>>>) {
    cancel.cancelled().await;
    for tenant in tenants.values() {
        tenant.hub.close();
    }
}

/// The next live frame; keyed clients' lag is handled in the hub, so they never lag here.
async fn recv(live: &mut Live) -> Result<Arc<Frame>, RecvError> {
    match live {
        Live::All(rx) => rx.recv().await,
        Live::Keys(rx, _) => rx.recv().await.ok_or(RecvError::Closed),
    }
}

/// The keys a request may read: as asked, or as its token grants (empty = all, which
/// only a tenant without auth or a `*` token gives).
fn authorize(
    tenant: &TenantHandle,
    headers: &HeaderMap,
    query_token: Option<&str>,
    requested: Vec<String>,
) -> Result<Vec<String>, ApiError> {
    let Some(verifier) = &tenant.auth else { return Ok(requested) };
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match verifier.check(bearer.or(query_token), &requested)? {
        Grant::AllKeys => Ok(Vec::new()),
        // The verifier never grants an empty set; refuse one all the same.
        Grant::Keys(keys) if keys.is_empty() => Err(crate::auth::AuthError::NoKeysGranted.into()),
        Grant::Keys(keys) => Ok(keys),
    }
}

async fn snapshot(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let tenant = state.tenant(&tenant)?;
    if !tenant.hub.latest_value() {
        return Err(ApiError::NoLatestValues(tenant.config.name.clone()));
    }
    let query = EventsQuery::parse(raw.as_deref())?;
    let keys = authorize(&tenant, &headers, query.token.as_deref(), query.keys)?;
    let keys = (!keys.is_empty()).then_some(keys.as_slice());
    Ok(([(header::CONTENT_TYPE, "application/json")], tenant.hub.snapshot_json(keys)).into_response())
}
