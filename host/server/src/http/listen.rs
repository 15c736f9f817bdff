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

use std::convert::Infallible;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response, header};
use bytes::{Buf, Bytes, BytesMut};
use futures::{FutureExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// A request head longer than this goes to hyper, which applies the configured limits.
const MAX_HEAD: usize = 16 * 1024;
/// A client that has not sent its request head by then is dropped.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// Most queued frames written in one vectored write.
const COALESCE: usize = 8;

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
                tasks.spawn(connection(stream, peer, router.clone(), tx.clone(), cancel.clone()));
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
    cancel: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let mut head = BytesMut::with_capacity(1024);
    let reading = tokio::time::timeout(HEAD_TIMEOUT, async {
        loop {
            if head.windows(4).any(|w| w == b"\r\n\r\n") {
                return true;
            }
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
        let _ = respond(stream, response).await;
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

/// Writes the response; an event stream is written frame by frame until it ends or the
/// client leaves, anything else whole, and the connection closes.
async fn respond(mut stream: TcpStream, response: Response<Body>) -> std::io::Result<()> {
    let (parts, body) = response.into_parts();
    let is_stream = parts.headers.get(header::CONTENT_TYPE).is_some_and(|v| v == "text/event-stream");
    let mut head = format!("HTTP/1.1 {}\r\n", parts.status);
    for (name, value) in &parts.headers {
        if name != header::CONTENT_LENGTH && name != header::CONNECTION && name != header::TRANSFER_ENCODING {
            head.push_str(&format!("{name}: {}\r\n", String::from_utf8_lossy(value.as_bytes())));
        }
    }
    if !is_stream {
        let body = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
        head.push_str(&format!("content-length: {}\r\nconnection: close\r\n\r\n", body.len()));
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(&body).await?;
        return stream.shutdown().await;
    }
    head.push_str("connection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await?;
    let mut frames = body.into_data_stream();
    let mut discard = [0u8; 64];
    loop {
        tokio::select! {
            biased;
            frame = frames.next() => {
                let Some(Ok(first)) = frame else { break };
                let mut batch: [Bytes; COALESCE] = Default::default();
                batch[0] = first;
                let mut n = 1;
                while n < COALESCE {
                    match frames.next().now_or_never() {
                        Some(Some(Ok(more))) => { batch[n] = more; n += 1; }
                        _ => break,
                    }
                }
                write_all_vectored(&mut stream, &mut batch[..n]).await?;
            }
            ready = stream.readable() => {
                ready?;
                match stream.try_read(&mut discard) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    stream.shutdown().await
}

async fn write_all_vectored(stream: &mut TcpStream, bufs: &mut [Bytes]) -> std::io::Result<()> {
    let mut first = 0;
    while first < bufs.len() {
        let slices: [IoSlice; COALESCE] = std::array::from_fn(|i| IoSlice::new(bufs.get(first + i).map_or(&[], |b| b)));
        let mut written = stream.write_vectored(&slices[..bufs.len() - first]).await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while first < bufs.len() && written >= bufs[first].len() {
            written -= bufs[first].len();
            first += 1;
        }
        if written > 0 {
            bufs[first].advance(written);
        }
    }
    Ok(())
}

/// A connection whose first bytes were already read: they are read again first.
pub struct Prefixed {
    prefix: Bytes,
    inner: TcpStream,
}

impl AsyncRead for Prefixed {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        if self.prefix.has_remaining() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The router as hyper's per-connection service, with the peer's address recorded as
/// `ConnectInfo` (as `into_make_service_with_connect_info` would do).
#[derive(Clone)]
pub struct WithPeer(pub Router);

impl tower::Service<axum::serve::IncomingStream<'_, Listener>> for WithPeer {
    type Response = PeerService;
    type Error = Infallible;
    type Future = std::future::Ready<Result<PeerService, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, incoming: axum::serve::IncomingStream<'_, Listener>) -> Self::Future {
        std::future::ready(Ok(PeerService { router: self.0.clone(), peer: *incoming.remote_addr() }))
    }
}

/// The router for one connection's requests.
#[derive(Clone)]
pub struct PeerService {
    router: Router,
    peer: SocketAddr,
}

impl tower::Service<Request<Body>> for PeerService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = <Router as tower::Service<Request<Body>>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        tower::Service::<Request<Body>>::poll_ready(&mut self.router, cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        req.extensions_mut().insert(ConnectInfo(self.peer));
        self.router.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_event_stream_requests_are_taken() {
        for head in [&b"G"[..], b"GET /ten", b"GET /tenants/taxi/ev", b"GET /tenants/taxi/events HTTP/1.1\r\n",
                     b"GET /tenants/q/events?key=a&key=b HTTP/1.1\r\n"] {
            assert!(looks_like_events(head), "{}", String::from_utf8_lossy(head));
        }
        for head in [&b"POST"[..], b"GET / HTTP/1.1\r\n", b"GET /tenants/taxi/snapshot HTTP/1.1\r\n",
                     b"GET /tenants/a/b/events HTTP/1.1\r\n", b"GET /tenants/taxi/events/x HTTP/1.1\r\n",
                     b"HEAD /tenants/taxi/events HTTP/1.1\r\n"] {
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
