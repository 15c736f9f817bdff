//! Handler tests through `oneshot`: health, snapshot, SSE resume and ids, tokens, keys, lag.

use super::*;
use crate::bus::LogPosition;
use crate::event::Event;
use crate::hub::Hub;
use crate::metrics::TenantMetrics;
use axum::body::Body;
use axum::http::Request;
use futures::StreamExt;
use tower::ServiceExt;

mod tokens;

fn app() -> (Router, Arc<TenantHandle>) {
    app_with(None)
}

fn app_with(auth: Option<crate::auth::Verifier>) -> (Router, Arc<TenantHandle>) {
    app_full(auth, limits::LimitsConfig::default())
}

fn app_full(
    auth: Option<crate::auth::Verifier>,
    limits: limits::LimitsConfig,
) -> (Router, Arc<TenantHandle>) {
    let handle = Arc::new(TenantHandle {
        config: crate::demo::taxi_tenant(),
        hub: Arc::new(Hub::new("liveMapLocation", true, 16, 16, Arc::new(TenantMetrics::new("taxi")))),
        metrics: Arc::new(TenantMetrics::new("taxi")),
        ready: Arc::new(crate::readiness::Readiness::without_source()),
        auth,
        chain: tokio::sync::watch::channel(crate::tenant::ChainStatus::empty()).1,
        shadow: Default::default(),
    });
    let tenants = BTreeMap::from([("taxi".to_string(), handle.clone())]);
    let limits = Arc::new(limits::Limits::new(limits));
    let state = AppState {
        tenants: Arc::new(tenants),
        cancel: CancellationToken::new(),
        admin: None,
        limits,
        doors: Default::default(),
    };
    (router(state), handle)
}

fn publish(handle: &TenantHandle, n: u64, taxi: &str) {
    let payload = bytes::Bytes::from(format!(r#"{{"mediaId":"{taxi}","timestamp":{n}}}"#));
    let e = Event { key: taxi.into(), event_time: n as i64, payload, ..Default::default() };
    handle.hub.publish(LogPosition { major: n, minor: 0 }, vec![e], &[]);
}

async fn get(app: &Router, uri: &str, header: Option<(&str, &str)>) -> axum::response::Response {
    let mut req = Request::get(uri);
    if let Some((k, v)) = header {
        req = req.header(k, v);
    }
    app.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap()
}

/// Reads an SSE body until it holds `needle` (5 s per chunk at most); all text read.
async fn read_until(body: &mut axum::body::BodyDataStream, seen: &mut String, needle: &str) {
    while !seen.contains(needle) {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(5), body.next())
            .await
            .unwrap_or_else(|_| panic!("no {needle:?} within 5 s; got {seen}"))
            .unwrap()
            .unwrap();
        seen.push_str(std::str::from_utf8(&chunk).unwrap());
    }
}

async fn text(resp: axum::response::Response) -> String {
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn health_readiness_and_unknown_tenants() {
    let (app, handle) = app();
    assert_eq!(get(&app, "/healthz", None).await.status(), StatusCode::OK);
    let resp = get(&app, "/readyz", None).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(text(resp).await.contains("taxi"));
    handle.ready.log_up();
    assert_eq!(get(&app, "/readyz", None).await.status(), StatusCode::OK);
    // Readiness follows the connection, both ways, with the reason.
    handle.ready.log_down("redis stream: connection refused");
    let resp = get(&app, "/readyz", None).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(text(resp).await.contains("taxi: log: redis stream: connection refused"));
    handle.ready.log_up();
    assert_eq!(get(&app, "/readyz", None).await.status(), StatusCode::OK);
    let resp = get(&app, "/tenants/nope/events", None).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert!(text(resp).await.contains("unknown tenant \"nope\""));
}

#[tokio::test]
async fn snapshot_holds_the_newest_payload_per_key() {
    let (app, handle) = app();
    publish(&handle, 1, "taxi-1");
    publish(&handle, 2, "taxi-2");
    publish(&handle, 3, "taxi-1");
    let resp = get(&app, "/tenants/taxi/snapshot", None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        text(resp).await,
        r#"[{"mediaId":"taxi-2","timestamp":2},{"mediaId":"taxi-1","timestamp":3}]"#
    );
}

#[tokio::test]
async fn sse_resumes_after_last_event_id_and_rejects_bad_ids() {
    let (app, handle) = app();
    for n in 1..=3 {
        publish(&handle, n, "taxi-1");
    }
    let resp = get(&app, "/tenants/taxi/events", Some(("last-event-id", "1-0"))).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body().into_data_stream();
    let mut seen = String::new();
    read_until(&mut body, &mut seen, "id: 3-0").await;
    publish(&handle, 4, "taxi-1");
    read_until(&mut body, &mut seen, "id: 4-0").await;
    assert!(!seen.contains("id: 1-0"), "frames up to Last-Event-ID are not resent: {seen}");
    assert!(
        seen.contains(
            "event: liveMapLocation\nid: 2-0\ndata: [{\"mediaId\":\"taxi-1\",\"timestamp\":2}]\n\n"
        )
    );

    let resp = get(&app, "/tenants/taxi/events?lastEventId=bogus", None).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(text(resp).await.contains("Last-Event-ID"));
}

/// The `id:` lines of an SSE text, in order.
fn ids(text: &str) -> Vec<LogPosition> {
    text.lines().filter_map(|l| l.strip_prefix("id: ")).map(|id| id.parse().unwrap()).collect()
}

#[tokio::test]
async fn resumed_ids_only_move_forward_whatever_the_last_event_id() {
    // 40 frames through a 16-frame ring (ids 1-0 .. 40-0), then one live frame.
    for (resume, first) in [("39-0", 40), ("30-0", 31), ("1-0", 40), ("0-0", 40)] {
        let (app, handle) = app();
        for n in 1..=40 {
            publish(&handle, n, &format!("taxi-{}", n % 3));
        }
        let resp = get(&app, "/tenants/taxi/events", Some(("last-event-id", resume))).await;
        let mut body = resp.into_body().into_data_stream();
        let mut seen = String::new();
        read_until(&mut body, &mut seen, "id: 40-0").await;
        publish(&handle, 41, "taxi-1");
        read_until(&mut body, &mut seen, "id: 41-0").await;
        let ids = ids(&seen);
        assert_eq!(ids[0], LogPosition { major: first, minor: 0 }, "resume from {resume}: {seen}");
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "resume from {resume}: ids go back: {ids:?}");
    }
    let (app, handle) = app();
    // From the future: nothing older is sent, the stream waits for newer ids.
    let resp = get(&app, "/tenants/taxi/events", Some(("last-event-id", "1000-0"))).await;
    let mut body = resp.into_body().into_data_stream();
    publish(&handle, 999, "taxi-1");
    publish(&handle, 1001, "taxi-1");
    let mut seen = String::new();
    read_until(&mut body, &mut seen, "id: 1001-0").await;
    assert_eq!(ids(&seen), vec![LogPosition { major: 1001, minor: 0 }], "{seen}");
    // Malformed ids are refused with the reason.
    for bad in ["abc", "1-", "-1", "1-2-3", "18446744073709551616-0"] {
        let resp = get(&app, "/tenants/taxi/events", Some(("last-event-id", bad))).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
}

#[tokio::test]
async fn a_non_ascii_last_event_id_is_refused_not_ignored() {
    let (app, handle) = app();
    publish(&handle, 1, "taxi-1");
    for bad in [&b"1\xc3\xa9-0"[..], b"\xff", "\u{ff11}-0".as_bytes()] {
        let value = axum::http::HeaderValue::from_bytes(bad).unwrap();
        let req = Request::get("/tenants/taxi/events").header("last-event-id", value);
        let resp = app.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{bad:?} must be refused like any malformed id");
        let body = text(resp).await;
        assert!(body.contains("Last-Event-ID: not ASCII text"), "{bad:?}: {body}");
    }
}

const SECRET: &str = "a-secret-for-the-http-tests";

#[tokio::test]
async fn a_slow_client_is_counted_and_gets_the_newest_state_not_the_backlog() {
    let (app, handle) = app();
    let resp = get(&app, "/tenants/taxi/events", None).await;
    let mut body = resp.into_body().into_data_stream();
    // The client reads nothing while 40 frames go by: more than its 16-frame buffer.
    for n in 1..=40 {
        publish(&handle, n, &format!("taxi-{}", n % 3));
    }
    let mut seen = String::new();
    read_until(&mut body, &mut seen, "id: 40-0").await;
    assert!(handle.metrics.sse_lagged.load(std::sync::atomic::Ordering::Relaxed) >= 1);
    assert!(!seen.contains("id: 1-0\n"), "the oldest frames were skipped: {seen}");
    // The catch-up frame holds every key's newest payload, oldest first.
    let catch_up = r#"data: [{"mediaId":"taxi-2","timestamp":38},{"mediaId":"taxi-0","timestamp":39},{"mediaId":"taxi-1","timestamp":40}]"#;
    assert!(seen.contains(catch_up), "{seen}");
}

#[tokio::test]
async fn key_parameters_select_keys_and_are_checked() {
    let (app, handle) = app();
    publish(&handle, 1, "taxi-1");
    publish(&handle, 2, "taxi 2");
    let resp = get(&app, "/tenants/taxi/events?key=taxi%202&lastEventId=0-0", None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body().into_data_stream();
    let mut seen = String::new();
    read_until(&mut body, &mut seen, "id: 2-0").await;
    assert!(!seen.contains("taxi-1"), "only the requested key: {seen}");
    let resp = get(&app, "/tenants/taxi/events?key=", None).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let many: String = (0..1001).map(|i| format!("key=k{i}&")).collect();
    let resp = get(&app, &format!("/tenants/taxi/events?{many}"), None).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(text(resp).await.contains("at most 1000"));
}

#[tokio::test]
async fn a_full_tenant_refuses_new_streams_with_a_reason_and_counts_them() {
    let (app, handle) = app_full(None, limits::LimitsConfig { streams_per_tenant: 2, ..Default::default() });
    let first = get(&app, "/tenants/taxi/events", None).await;
    let second = get(&app, "/tenants/taxi/events", None).await;
    assert_eq!((first.status(), second.status()), (StatusCode::OK, StatusCode::OK));
    let third = get(&app, "/tenants/taxi/events", None).await;
    assert_eq!(third.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = axum::body::to_bytes(third.into_body(), 1 << 10).await.unwrap();
    assert_eq!(&body[..], b"this tenant's streams are full here\n");
    drop(first);
    let again = get(&app, "/tenants/taxi/events", None).await;
    assert_eq!(again.status(), StatusCode::OK, "a closed stream makes room");
    assert_eq!(handle.metrics.sse_clients.load(std::sync::atomic::Ordering::Relaxed), 2);
    let metrics = get(&app, "/metrics", None).await;
    let text = axum::body::to_bytes(metrics.into_body(), 1 << 20).await.unwrap();
    let text = String::from_utf8_lossy(&text);
    assert!(text.contains("streamgate_http_refused_total{reason=\"tenant_streams\"} 1"), "{text}");
}

#[tokio::test]
async fn oversized_urls_and_headers_are_refused_with_a_reason() {
    let small = limits::LimitsConfig { max_url_bytes: 1 << 10, ..Default::default() };
    let (app, _) = app_full(None, small);
    let long = format!("/healthz?{}", "x".repeat(2 << 10));
    let r = get(&app, &long, None).await;
    assert_eq!(r.status(), StatusCode::URI_TOO_LONG);
    let big = "y".repeat(40 << 10);
    let r = get(&app, "/healthz", Some(("x-big", &big))).await;
    assert_eq!(r.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    let body = axum::body::to_bytes(r.into_body(), 1 << 10).await.unwrap();
    assert_eq!(&body[..], b"the headers are larger than limits.max_header_bytes\n");
    assert_eq!(get(&app, "/healthz", Some(("x-small", "z"))).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_pages_and_the_outline_of_seoul_are_served_from_here() {
    let (app, _) = app();
    let resp = get(&app, "/ui/seoul.geojson", None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "application/geo+json");
    let geo: serde_json::Value = serde_json::from_str(&text(resp).await).unwrap();
    let kinds: Vec<&str> =
        geo["features"].as_array().unwrap().iter().filter_map(|f| f["properties"]["kind"].as_str()).collect();
    for kind in ["boundary", "river", "district-border", "label"] {
        assert!(kinds.contains(&kind), "the outline has a {kind}: {kinds:?}");
    }
    for page in ["/", "/queue", "/shadow"] {
        let html = text(get(&app, page, None).await).await;
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "{page} loads nothing from elsewhere"
        );
    }
}

#[tokio::test]
async fn streams_end_with_the_shutdown_hint_when_the_hubs_close() {
    let (app, handle) = app();
    let resp = get(&app, "/tenants/taxi/events", None).await;
    let mut body = resp.into_body().into_data_stream();
    let mut seen = String::new();
    publish(&handle, 1, "taxi-1");
    read_until(&mut body, &mut seen, "id: 1-0").await;
    let cancel = CancellationToken::new();
    let tenants = Arc::new(BTreeMap::from([("taxi".to_string(), handle.clone())]));
    let closing = tokio::spawn(sse::end_streams_at(cancel.clone(), tenants));
    cancel.cancel();
    closing.await.unwrap();
    read_until(&mut body, &mut seen, std::str::from_utf8(sse::SHUTDOWN_HINT).unwrap()).await;
    let end = tokio::time::timeout(std::time::Duration::from_secs(5), body.next()).await;
    assert!(matches!(end, Ok(None)), "the stream ends after the hint: {seen}");
}
