//! The security surface, against real tansu and redis-server and three `streamgate run`
//! processes: A and B (same admin token), C (admin API off, `[limits]` on).
//!
//! - Subscribers read exactly what their tokens grant: every kind of bad token is
//!   refused with its status and reason, and each subscriber's received keys are a
//!   subset of its grant (and not empty, so the check is not vacuous).
//! - The admin API refuses missing, wrong and one-character-off tokens, answers 403 when
//!   off, refuses garbage, WASI-importing and label-breaking components, and a too-big
//!   upload from its Content-Length before reading the body; concurrent chain changes
//!   through A and B end in one chain both run.
//! - HTTP abuse: thousands of streams opened and dropped, never-reading clients,
//!   malformed ids, ten thousand `key` parameters, huge URLs and headers: each refusal is
//!   a 4xx, the process stays up, its memory stays bounded, and a normal client is
//!   served throughout. C refuses a fourth stream from one address (429, counted).

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Instance, Redis, SseClient, SseFrame, Tansu, http_get};
use futures::future::join_all;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Value, json};
use streamgate::auth::{Claims, issue_hs256};

const SECRET: &str = "security-test-secret-0123456789";
const ADMIN: &str = "security-admin-token-0123456789";

fn queue_with_auth() -> String {
    format!("{}\n[tenant.auth]\nhs256_secret = \"{SECRET}\"\n", common::QUEUE_TENANT)
}

fn user(i: usize) -> String {
    format!("u-{i:04}")
}

fn now_s() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn token(tenant: &str, keys: &[&str]) -> String {
    let claims = Claims {
        tenant: tenant.into(),
        keys: keys.iter().map(|k| k.to_string()).collect(),
        exp: now_s() + 600,
    };
    issue_hs256(SECRET, &claims).unwrap()
}

/// Signs arbitrary claims (missing `keys`, `nbf`, ...) with the tenant's secret.
fn raw_token(claims: Value) -> String {
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
}

/// One raw HTTP/1.1 exchange: sends `request` as is, reads up to `limit` bytes of the
/// answer (headers and the start of the body); `(status, text)`.
fn raw(port: u16, request: &[u8], limit: usize) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // The server may answer and close before taking all of a refused request.
    let _ = s.write_all(request);
    let mut buf = vec![0u8; limit];
    let mut n = 0;
    while n < limit {
        match s.read(&mut buf[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
        if std::str::from_utf8(&buf[..n]).is_ok_and(|t| t.contains("\r\n\r\n") && !t.ends_with("\r\n\r\n")) {
            break;
        }
    }
    let text = String::from_utf8_lossy(&buf[..n]).to_string();
    let status =
        text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status: {text:?}"));
    (status, text)
}

fn get(port: u16, path: &str, headers: &str) -> (u16, String) {
    raw(
        port,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}\r\n").as_bytes(),
        1 << 16,
    )
}

async fn produce(producer: &FutureProducer, topic: &str, messages: Vec<(String, Vec<u8>)>) {
    let sends = messages.iter().map(|(key, payload)| {
        producer.send(FutureRecord::to(topic).key(key).payload(payload), Duration::from_secs(10))
    });
    for r in join_all(sends).await {
        r.map_err(|(e, _)| e).expect("kafka delivery");
    }
}

fn queue_events(users: usize, start_ms: i64) -> Vec<(String, Vec<u8>)> {
    (0..users)
        .map(|i| {
            let e = json!({"eventId": format!("e-{i}-{start_ms}"), "userId": user(i), "kind": "admitted",
                "rank": 0, "timestamp": start_ms});
            (user(i), serde_json::to_vec(&e).unwrap())
        })
        .collect()
}

/// Keys (userIds) in received frames.
fn keys_seen(frames: &[SseFrame]) -> BTreeSet<String> {
    frames.iter().flat_map(|f| f.payloads()).filter_map(|p| p["userId"].as_str().map(String::from)).collect()
}

async fn grants(a: &Instance, producer: &FutureProducer) {
    // Refusals, each with its status and reason.
    let long = format!("{}.{}.x", "a".repeat(6000), "b".repeat(3000));
    let cases: Vec<(&str, Option<String>, &str, u16, &str)> = vec![
        ("no token", None, "", 401, "token is required"),
        ("empty grant", Some(token("queue", &[])), "", 403, "grants no key"),
        (
            "missing keys claim",
            Some(raw_token(json!({"tenant": "queue", "exp": now_s() + 60}))),
            "",
            403,
            "grants no key",
        ),
        ("another tenant", Some(token("taxi", &["*"])), "", 403, "for tenant \"taxi\""),
        ("key not granted", Some(token("queue", &["u-0001"])), "&key=u-0002", 403, "does not grant key"),
        (
            "expired",
            Some(raw_token(json!({"tenant": "queue", "keys": ["*"], "exp": now_s() - 60}))),
            "",
            401,
            "expired",
        ),
        (
            "not yet valid",
            Some(raw_token(
                json!({"tenant": "queue", "keys": ["*"], "exp": now_s() + 600, "nbf": now_s() + 300}),
            )),
            "",
            401,
            "not valid yet",
        ),
        ("missing exp", Some(raw_token(json!({"tenant": "queue", "keys": ["*"]}))), "", 401, "not valid"),
        (
            "alg none",
            Some(format!(
                "{}.{}.",
                b64(r#"{"alg":"none","typ":"JWT"}"#),
                b64(r#"{"tenant":"queue","keys":["*"],"exp":9999999999}"#)
            )),
            "",
            401,
            "not valid",
        ),
        (
            "wrong secret",
            Some(
                issue_hs256(
                    "another-secret-0123456789",
                    &Claims { tenant: "queue".into(), keys: vec!["*".into()], exp: now_s() + 60 },
                )
                .unwrap(),
            ),
            "",
            401,
            "not valid",
        ),
        ("oversized", Some(long), "", 401, "larger than"),
        ("garbage", Some("not.a.token".into()), "", 401, "not valid"),
    ];
    for (what, token, extra, status, reason) in cases {
        let query = token.map_or(String::new(), |t| format!("token={t}"));
        let (got, text) = get(a.port, &format!("/tenants/queue/events?{query}{extra}"), "");
        assert_eq!(got, status, "{what}: {text}");
        assert!(text.contains(reason), "{what}: the reason says {reason:?}: {text}");
    }
    // Bearer header works like ?token=, and a malformed id is a 400 with a reason.
    let (status, text) = get(
        a.port,
        "/tenants/queue/events",
        &format!("Authorization: Bearer {}\r\nLast-Event-ID: nope\r\n", token("queue", &["*"])),
    );
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("Last-Event-ID"), "{text}");

    // Subscribers with grants; what each receives stays inside its grant.
    let subscribers: Vec<(Vec<&str>, &str)> = vec![
        (vec!["u-0001"], ""),
        (vec!["u-0002", "u-0003"], ""),
        (vec!["u-0004", "u-0005"], "&key=u-0004"),
        (vec!["*"], "&key=u-0006"),
        (vec!["*"], ""),
    ];
    let mut clients = Vec::new();
    for (keys, extra) in &subscribers {
        let url = a.url(&format!("/tenants/queue/events?token={}{extra}", token("queue", keys)));
        clients.push(SseClient::connect(&url).await);
    }
    produce(producer, "queue", queue_events(10, 1_700_000_000_000)).await;
    let expected: Vec<BTreeSet<String>> = vec![
        ["u-0001"].map(String::from).into(),
        ["u-0002", "u-0003"].map(String::from).into(),
        ["u-0004"].map(String::from).into(),
        ["u-0006"].map(String::from).into(),
        (0..10).map(user).collect(),
    ];
    for (client, want) in clients.iter().zip(&expected) {
        client
            .wait_until("every granted key's event", Duration::from_secs(30), |frames| {
                let seen = keys_seen(frames);
                if seen.is_superset(want) { Ok(()) } else { Err(format!("seen {seen:?}, want {want:?}")) }
            })
            .await;
    }
    for ((client, want), (keys, extra)) in clients.iter().zip(&expected).zip(&subscribers) {
        assert_eq!(
            &keys_seen(&client.frames()),
            want,
            "a subscriber granted {keys:?} asking {extra:?} read only that"
        );
    }
}

fn b64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

async fn admin(a: &Instance, b: &Instance, c: &Instance) {
    let http = reqwest::Client::new();
    let call = |req: reqwest::RequestBuilder| async move {
        let r = req.send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    let inspect = a.url("/admin/tenants/queue");
    let off_by_one = [
        format!("{}x", &ADMIN[..ADMIN.len() - 1]),
        format!("{ADMIN}x"),
        ADMIN[..ADMIN.len() - 1].to_string(),
        ADMIN.to_uppercase(),
    ];
    assert_eq!(call(http.get(&inspect)).await.0, 401, "no token");
    for wrong in &off_by_one {
        let (status, text) = call(http.get(&inspect).bearer_auth(wrong)).await;
        assert_eq!(status, 401, "{wrong}: {text}");
        assert!(text.contains("wrong admin token"), "{text}");
    }
    assert_eq!(call(http.get(&inspect).bearer_auth(ADMIN)).await.0, 200);
    let (status, text) = call(http.get(c.url("/admin/tenants/queue")).bearer_auth(ADMIN)).await;
    assert_eq!(status, 403, "C has no admin API: {text}");
    assert!(text.contains("disabled"), "{text}");

    // Uploads refused with their reasons; nothing odd reaches /metrics.
    let upload = |bytes: Vec<u8>| call(http.post(a.url("/admin/plugins")).bearer_auth(ADMIN).body(bytes));
    let wasi = wat::parse_str(r#"(component (import "wasi:cli/environment@0.2.0" (instance)))"#).unwrap();
    let badname = std::fs::read(streamgate_runtime::builtin::component_path("fixture_badname")).unwrap();
    for (what, bytes, reason) in [
        ("garbage", b"\0asm garbage".to_vec(), "not a Wasm component"),
        ("wasi", wasi, "wasi:cli/environment"),
        ("lying name", badname, "description is refused"),
    ] {
        let (status, text) = upload(bytes).await;
        assert_eq!(status, 422, "{what}: {text}");
        assert!(text.contains(reason), "{what}: {text}");
    }
    let metrics = http_get(&a.url("/metrics")).unwrap();
    assert!(!metrics.lines().any(|l| l.starts_with("streamgate_up") || l.contains("evil")), "{metrics}");
    // A gigabyte announced, none sent: refused from the header, at once.
    let started = Instant::now();
    let request = format!(
        "POST /admin/plugins HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\nContent-Length: 1073741824\r\n\r\n"
    );
    let (status, text) = raw(a.port, request.as_bytes(), 4096);
    assert_eq!(status, 413, "{text}");
    assert!(started.elapsed() < Duration::from_secs(5), "answered without waiting for the body");

    // Concurrent chain changes through A and B: one chain, the same on both.
    let chain = |forget: u64| {
        json!({"policies": [
            {"plugin": "builtin:dedupe", "config": {"by": "id", "forget_after_ms": forget}},
            {"plugin": "builtin:coalesce", "config": {"tags": ["rank"]}},
        ]})
    };
    for round in 0..4u64 {
        let put = |instance: &Instance, forget: u64| {
            http.put(instance.url("/admin/tenants/queue/chain"))
                .bearer_auth(ADMIN)
                .json(&chain(forget))
                .send()
        };
        let (ra, rb) = tokio::join!(put(a, 600_000 + round), put(b, 700_000 + round));
        assert!(ra.unwrap().status().is_success() && rb.unwrap().status().is_success(), "round {round}");
    }
    let view = |i: &Instance| {
        let url = i.url("/admin/tenants/queue");
        let http = http.clone();
        async move { http.get(url).bearer_auth(ADMIN).send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (va, vb) = tokio::join!(view(a), view(b));
        let last = va["history"].as_array().and_then(|h| h.last()).map(|r| r["chain"]["version"].clone());
        if va["active"]["version"] == vb["active"]["version"]
            && va["active"]["policies"] == vb["active"]["policies"]
            && Some(&va["active"]["version"]) == last.as_ref()
        {
            break;
        }
        assert!(Instant::now() < deadline, "A and B on one chain within 20 s: A {va} / B {vb}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn abuse(a: &Instance, c: &Instance, producer: &FutureProducer) {
    let rss_before = a.rss_bytes();
    // A normal client, served throughout.
    let watcher = SseClient::connect(&a.url("/tenants/taxi/events")).await;
    // Thousands of streams opened and dropped.
    for _ in 0..10 {
        let opened: Vec<TcpStream> = (0..200)
            .map(|_| {
                let mut s = TcpStream::connect(("127.0.0.1", a.port)).unwrap();
                s.write_all(b"GET /tenants/taxi/events HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
                s
            })
            .collect();
        drop(opened);
    }
    // Never-reading clients while a burst of traffic flows.
    let stalled: Vec<TcpStream> = (0..300)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", a.port)).unwrap();
            s.write_all(b"GET /tenants/taxi/events HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            s
        })
        .collect();
    // Current times: the taxi chain drops anything 30 s older than log time.
    let t0 = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    for round in 0..5 {
        let taxis = (0..1000).map(|i| {
            let p = json!({"mediaId": format!("taxi-{i}"), "timestamp": t0 + round * 100, "lat": 1.0, "lng": 2.0});
            (format!("taxi-{i}"), serde_json::to_vec(&p).unwrap())
        });
        produce(producer, "taxi", taxis.collect()).await;
    }
    watcher
        .wait_until("every taxi on the normal client's stream", Duration::from_secs(60), |frames| {
            let taxis: BTreeSet<String> = frames
                .iter()
                .flat_map(|f| f.payloads())
                .filter_map(|p| p["mediaId"].as_str().map(String::from))
                .collect();
            if taxis.len() == 1000 { Ok(()) } else { Err(format!("{} of 1000 taxis", taxis.len())) }
        })
        .await;
    // Oversized queries, URLs and headers: 4xx, with our reason where it is ours.
    let keys = (0..1001).map(|i| format!("key=k{i}")).collect::<Vec<_>>().join("&");
    let (status, text) = get(a.port, &format!("/tenants/taxi/events?{keys}"), "");
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("at most"), "{text}");
    let keys = (0..10_000).map(|i| format!("key=k{i}")).collect::<Vec<_>>().join("&");
    let (status, text) = get(a.port, &format!("/tenants/taxi/events?{keys}"), "");
    assert!((400..500).contains(&status), "ten thousand keys: {text}");
    let (status, _) = get(a.port, &format!("/healthz?{}", "x".repeat(200_000)), "");
    assert!((400..500).contains(&status), "a 200 KB URL: {status}");
    let (status, _) = get(a.port, "/healthz", &format!("X-Big: {}\r\n", "y".repeat(200_000)));
    assert!((400..500).contains(&status), "a 200 KB header: {status}");
    let many: String = (0..500).map(|i| format!("X-H{i}: v\r\n")).collect();
    let (status, _) = get(a.port, "/healthz", &many);
    assert!((400..500).contains(&status), "500 headers: {status}");
    let (status, _) = get(a.port, "/tenants/taxi/events?lastEventId=99999999999999999999999-1", "");
    assert_eq!(status, 400, "an id beyond u64");

    // Still up, still serving, memory bounded.
    assert_eq!(get(a.port, "/healthz", "").0, 200);
    let grown = a.rss_bytes().saturating_sub(rss_before);
    eprintln!(
        "security: RSS {} MiB before the abuse, +{} MiB with 300 stalled clients",
        rss_before >> 20,
        grown >> 20
    );
    assert!(grown < 64 << 20, "memory grew by {} MiB with 300 stalled clients", grown >> 20);
    drop(stalled);
    common::wait_for("dropped streams to be released", Duration::from_secs(20), || {
        a.metric("streamgate_sse_clients{tenant=\"taxi\"}") == 1.0
    });

    // C: at most three streams from one address.
    let url = c.url("/tenants/taxi/events");
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(SseClient::connect(&url).await);
    }
    let (status, text) = get(c.port, "/tenants/taxi/events", "");
    assert_eq!(status, 429, "{text}");
    assert!(text.contains("too many open streams from this address"), "{text}");
    assert_eq!(c.metric("streamgate_http_refused_total{reason=\"address_streams\"}"), 1.0);
    drop(held);
    common::wait_for("C's slots freed", Duration::from_secs(10), || get(c.port, "/readyz", "").0 == 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_admin_and_http_abuse_are_refused_and_nothing_leaks() {
    let (tansu, redis) = (Tansu::start(), Redis::start());
    tansu.create_topic("queue", 2);
    tansu.create_topic("taxi", 2);
    let services = common::services_config(&tansu, &redis, "security-test");
    let tenants = format!("{}{}", common::TAXI_TENANT, queue_with_auth());
    let with_admin = format!("{services}\n[admin]\ntoken = \"{ADMIN}\"\napply_timeout_ms = 5000\n{tenants}");
    let limited = format!("{services}\n[limits]\nstreams_per_address = 3\n{tenants}");
    let (a, b, c) = (Instance::start(&with_admin), Instance::start(&with_admin), Instance::start(&limited));
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", tansu.brokers())
        .set("message.timeout.ms", "20000")
        .create()
        .expect("kafka producer");

    eprintln!("security: grants");
    grants(&a, &producer).await;
    eprintln!("security: admin API");
    admin(&a, &b, &c).await;
    eprintln!("security: HTTP abuse");
    abuse(&a, &c, &producer).await;
}
