//! The listener over a real socket: heads that arrive a byte at a time, for an event
//! stream (served here) and for anything else (handed to hyper with what was read).

use std::time::Duration;

use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::routing::get;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Listener, WithPeer};

async fn serve() -> (std::net::SocketAddr, CancellationToken) {
    let router = Router::new()
        .route(
            "/tenants/{tenant}/events",
            get(|| async { ([(CONTENT_TYPE, "text/event-stream")], "data: hi\n\n") }),
        )
        .route("/healthz", get(|| async { "ok" }));
    let socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let cancel = CancellationToken::new();
    let listener = Listener::new(socket, router.clone(), TaskTracker::new(), cancel.clone());
    tokio::spawn(async move { axum::serve(listener, WithPeer(router)).await });
    (addr, cancel)
}

/// Sends `head` one byte per write, 2 ms apart (a slow client: each byte its own read on
/// the server), then reads the answer until the peer closes or `until` shows up (bounded).
async fn trickle(addr: std::net::SocketAddr, head: &[u8], until: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    for b in head {
        s.write_all(&[*b]).await.unwrap();
        s.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 1024];
        while !String::from_utf8_lossy(&got).contains(until) {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read).await.expect("an answer within 10 s");
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test]
async fn a_head_trickled_byte_by_byte_is_served_on_either_path() {
    let (addr, cancel) = serve().await;
    let events = trickle(addr, b"GET /tenants/taxi/events HTTP/1.1\r\nHost: x\r\n\r\n", "data: hi").await;
    assert!(events.starts_with("HTTP/1.1 200"), "{events}");
    assert!(events.contains("text/event-stream") && events.contains("data: hi"), "{events}");
    let health = trickle(addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", "ok").await;
    assert!(health.starts_with("HTTP/1.1 200") && health.ends_with("ok"), "{health}");
    cancel.cancel();
}
