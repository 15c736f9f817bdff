//! Writing an answer on a connection the listener serves itself: an event stream frame
//! by frame (frames already queued together, in one vectored write) until it ends or the
//! client leaves, anything else whole; then the connection closes.

use std::io::IoSlice;

use axum::body::Body;
use axum::http::{Response, header};
use bytes::{Buf, Bytes};
use futures::{FutureExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Most queued frames written in one vectored write.
const COALESCE: usize = 8;

/// Writes the response; an event stream is written frame by frame until it ends or the
/// client leaves, anything else whole, and the connection closes.
pub(super) async fn respond(mut stream: TcpStream, response: Response<Body>) -> std::io::Result<()> {
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
                let (mut n, mut ended) = (1, false);
                while n < COALESCE {
                    match frames.next().now_or_never() {
                        Some(Some(Ok(more))) => { batch[n] = more; n += 1; }
                        // The body ended (or failed): write what came, then stop; an
                        // ended stream must not be polled again.
                        Some(_) => { ended = true; break; }
                        None => break,
                    }
                }
                write_all_vectored(&mut stream, &mut batch[..n]).await?;
                if ended {
                    break;
                }
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
        let slices: [IoSlice; COALESCE] =
            std::array::from_fn(|i| IoSlice::new(bufs.get(first + i).map_or(&[], |b| b)));
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
