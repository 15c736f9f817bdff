//! The HTTP listener: an event-stream request (`GET /tenants/{tenant}/events`) is
//! answered by the same router as every other, but its stream is then written to the
//! socket here, holding no HTTP connection state for as long as it lasts (hyper keeps an
//! 8 KiB read buffer and an 8 KiB header buffer per connection, more than the rest of
//! a subscriber together). Everything else, and any request this does not read plainly
//! (too large, malformed, another method), goes to hyper through [`Listener::accept`]
//! with the bytes already read put back in front.
//!
//! A stream's frames are written as they come; frames already queued when the socket
//! is ready go out together in one vectored write. The connection closes when the
//! stream ends (shutdown) or the client goes away, seen as end-of-file on the socket.
//!
//! Streams are written on a runtime of their own ([`streams`]): a frame wakes every
//! subscriber at once, and on the main runtime the Kafka source, the log reader and
//! hyper's requests would queue behind thousands of socket writes (at 10,000
//! subscribers, tens of milliseconds per frame); on their own threads they only share
//! the cores, as the operating system schedules them.

mod handoff;
#[cfg(test)]
mod tests;
mod write;

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use bytes::BytesMut;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

pub use handoff::{PeerService, Prefixed, WithPeer};

/// A request head longer than this goes to hyper, which applies the configured limits.
const MAX_HEAD: usize = 16 * 1024;
/// A client that has not sent its request head by then is dropped.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

/// Accepts connections, serves event streams itself and yields the rest to hyper.
pub struct Listener {
    handed: mpsc::Receiver<(Prefixed, SocketAddr)>,
    addr: SocketAddr,
}

impl Listener {
    /// Starts accepting on `listener`; connection tasks run on `tasks` and end on `cancel`.
    pub fn new(listener: TcpListener, router: Router, tasks: TaskTracker, cancel: CancellationToken) -> Self {
        let addr = listener.local_addr().expect("a bound listener has an address");
        let (tx, handed) = mpsc::channel(256);
        let spawner = tasks.clone();
        spawner.spawn(async move {
            loop {
                let (stream, peer) = tokio::select! {
                    _ = cancel.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // Out of file descriptors, mostly: let some close first.
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                };
                tasks.spawn(connection(
                    stream,
                    peer,
                    router.clone(),
                    tx.clone(),
                    tasks.clone(),
                    cancel.clone(),
                ));
            }
        });
        Listener { handed, addr }
    }
}

impl axum::serve::Listener for Listener {
    type Io = Prefixed;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.handed.recv().await {
            Some(conn) => conn,
            // The accept loop stopped (shutdown): nothing more comes.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.addr)
    }
}

/// Reads the request head; an event-stream request is served here, anything else handed on.
/// Only the head's reading and handing on wait on `cancel`: an event stream ends by
/// itself at shutdown, and a wait per connection would be polled at every frame.
async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    hyper: mpsc::Sender<(Prefixed, SocketAddr)>,
    tasks: TaskTracker,
    cancel: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let mut head = BytesMut::with_capacity(1024);
    let reading = tokio::time::timeout(HEAD_TIMEOUT, async {
        // Bytes already searched for the blank line: each read searches only what it
        // added (and 3 bytes before), so a client trickling its head byte by byte costs
        // linear, not quadratic, time.
        let mut searched: usize = 0;
        loop {
            if head[searched.saturating_sub(3)..].windows(4).any(|w| w == b"\r\n\r\n") {
                return true;
            }
            searched = head.len();
            if head.len() >= MAX_HEAD || !looks_like_events(&head) {
                return false;
            }
            match tokio::io::AsyncReadExt::read_buf(&mut stream, &mut head).await {
                Ok(0) | Err(_) => return false,
                Ok(_) => {}
            }
        }
    });
    let complete = tokio::select! {
        _ = cancel.cancelled() => return,
        read = reading => match read {
            Ok(complete) => complete,
            Err(_) => return,
        },
    };
    if complete
        && looks_like_events(&head)
        && let Some(request) = parse(&head, peer)
    {
        let response = router.oneshot(request).await.unwrap_or_else(|e| match e {});
        // The socket leaves this runtime's reactor for the streams' one.
        let Ok(socket) = stream.into_std() else { return };
        streams().spawn(tasks.track_future(async move {
            if let Ok(stream) = TcpStream::from_std(socket) {
                let _ = write::respond(stream, response).await;
            }
        }));
        return;
    }
    if head.is_empty() {
        return;
    }
    let conn = (Prefixed { prefix: head.freeze(), inner: stream }, peer);
    tokio::select! {
        _ = cancel.cancelled() => {}
        _ = hyper.send(conn) => {}
    }
}

/// The runtime event streams are written on: one worker per core, its own reactor.
/// Started with the first stream and kept for the life of the process.
fn streams() -> &'static tokio::runtime::Handle {
    static STREAMS: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    STREAMS
        .get_or_init(|| {
            let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(workers)
                .thread_name("sse-streams")
                .enable_all()
                .build()
                .expect("starting the event streams' runtime")
        })
        .handle()
}

/// The request line (as far as it came) may be `GET /tenants/{tenant}/events[?...] `.
fn looks_like_events(head: &[u8]) -> bool {
    const START: &[u8] = b"GET /tenants/";
    let n = head.len().min(START.len());
    if head[..n] != START[..n] {
        return false;
    }
    let after_method = head.get(4..).unwrap_or_default();
    let Some(end) = after_method.iter().position(|&b| b == b' ' || b == b'\r').map(|e| e + 4) else {
        return true; // the target is still coming
    };
    let target = &head[4..end];
    let path = target.split(|&b| b == b'?').next().unwrap_or(target);
    path.ends_with(b"/events") && path.iter().filter(|&&b| b == b'/').count() == 3
}

/// The request a plain head describes; `None` for anything hyper should judge.
fn parse(head: &[u8], peer: SocketAddr) -> Option<Request<Body>> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(_) = req.parse(head).ok()? else { return None };
    let version = match req.version? {
        0 => axum::http::Version::HTTP_10,
        _ => axum::http::Version::HTTP_11,
    };
    let mut builder = Request::builder().method(req.method?).uri(req.path?).version(version);
    for h in req.headers.iter() {
        builder = builder.header(h.name, h.value);
    }
    let mut request = builder.body(Body::empty()).ok()?;
    request.extensions_mut().insert(ConnectInfo(peer));
    Some(request)
}

#[cfg(test)]
mod head_tests {
    use super::*;

    #[test]
    fn only_event_stream_requests_are_taken() {
        for head in [
            &b"G"[..],
            b"GET /ten",
            b"GET /tenants/taxi/ev",
            b"GET /tenants/taxi/events HTTP/1.1\r\n",
            b"GET /tenants/q/events?key=a&key=b HTTP/1.1\r\n",
        ] {
            assert!(looks_like_events(head), "{}", String::from_utf8_lossy(head));
        }
        for head in [
            &b"POST"[..],
            b"GET / HTTP/1.1\r\n",
            b"GET /tenants/taxi/snapshot HTTP/1.1\r\n",
            b"GET /tenants/a/b/events HTTP/1.1\r\n",
            b"GET /tenants/taxi/events/x HTTP/1.1\r\n",
            b"HEAD /tenants/taxi/events HTTP/1.1\r\n",
        ] {
            assert!(!looks_like_events(head), "{}", String::from_utf8_lossy(head));
        }
    }

    #[test]
    fn a_plain_head_becomes_a_request_with_the_peer() {
        let peer: SocketAddr = "10.0.0.7:5000".parse().unwrap();
        let head = b"GET /tenants/taxi/events?key=a HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 5-0\r\n\r\n";
        let req = parse(head, peer).expect("parsed");
        assert_eq!(req.uri().path(), "/tenants/taxi/events");
        assert_eq!(req.uri().query(), Some("key=a"));
        assert_eq!(req.headers()["last-event-id"], "5-0");
        assert_eq!(req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0), Some(peer));
        assert!(parse(b"GET /tenants/taxi/events HTTP/1.1\r\nBad Header\r\n\r\n", peer).is_none());
    }
}
