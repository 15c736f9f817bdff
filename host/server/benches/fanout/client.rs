//! The SSE subscribers: raw TCP on tokio, one small task per connection, no per-
//! connection read buffer (a thread-local scratch buffer and a few carried bytes), and
//! no SSE parsing beyond finding each message's `"sent":MICROS` stamp and each frame's
//! `id:` line: one clock read per socket read, one histogram entry per message (and the
//! split of [`crate::split`] per frame).

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::split::{Split, parse_position};
use crate::stats::Histogram;

const STAMP: &[u8] = b"\"sent\":";
const ID: &[u8] = b"\nid: ";
/// Connections opening at once (the servers' accept backlogs are larger).
const CONNECTING: usize = 200;

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; 256 * 1024]);
}

/// Microseconds since the Unix epoch (the stamp the publishers embed).
pub fn now_us() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as u64
}

/// What all subscribers of one run share.
pub struct Shared {
    pub latency: Histogram,
    pub split: Split,
    /// Connections that got a `200` status line.
    pub connected: AtomicU64,
    /// Connections that ended or failed.
    pub closed: AtomicU64,
}

/// `n` subscribers of `path` at `addr`; returns once every one has its `200` (or failed).
pub async fn connect_all(addr: SocketAddr, path: &str, n: usize, shared: Arc<Shared>) -> JoinSet<()> {
    let request: Arc<[u8]> =
        format!("GET {path} HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n")
            .into_bytes()
            .into();
    let gate = Arc::new(Semaphore::new(CONNECTING));
    let mut set = JoinSet::new();
    for _ in 0..n {
        let permit = gate.clone().acquire_owned().await.unwrap();
        let (request, shared) = (request.clone(), shared.clone());
        set.spawn(async move {
            if let Err(e) = subscribe(addr, &request, &shared, permit).await
                && shared.closed.fetch_add(1, Relaxed) == 0
            {
                eprintln!("fanout: a subscriber failed: {e}");
            }
        });
    }
    // Every permit back: each subscriber has its status line or has failed.
    let _all = gate.acquire_many(CONNECTING as u32).await.unwrap();
    set
}

async fn subscribe(
    addr: SocketAddr,
    request: &[u8],
    shared: &Shared,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> std::io::Result<()> {
    let mut stream = tokio::time::timeout(Duration::from_secs(20), TcpStream::connect(addr)).await??;
    stream.set_nodelay(true)?;
    stream.write_all(request).await?;
    let mut permit = Some(permit);
    let mut carry = Carry::default();
    loop {
        stream.readable().await?;
        let n = SCRATCH.with_borrow_mut(|buf| {
            let kept = carry.len as usize;
            buf[..kept].copy_from_slice(&carry.bytes[..kept]);
            let n = match stream.try_read(&mut buf[kept..]) {
                Ok(0) => return Ok(0),
                Ok(n) => n,
                Err(e) => return Err(e),
            };
            if permit.is_some() {
                if !buf[kept..kept + n].starts_with(b"HTTP/1.1 200") {
                    let head = String::from_utf8_lossy(&buf[kept..kept + n.min(80)]).into_owned();
                    return Err(std::io::Error::other(format!("refused: {head}")));
                }
                shared.connected.fetch_add(1, Relaxed);
                permit = None;
            }
            carry = scan(&buf[..kept + n], now_us(), shared, carry.position);
            Ok(n)
        });
        match n {
            Ok(0) => return Err(std::io::Error::other("server closed the stream")),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
}

/// Bytes at the end of a read that may start a stamp or an id, kept for the next read,
/// and the log position of the frame being read (its `id:` comes before its data).
#[derive(Default)]
struct Carry {
    bytes: [u8; 32],
    len: u8,
    position: Option<(u64, u64)>,
}

/// Records `now - stamp` for each whole stamp in `buf`, and the split of each frame
/// whose `id:` is a log position; returns the unfinished tail.
fn scan(buf: &[u8], now: u64, shared: &Shared, mut position: Option<(u64, u64)>) -> Carry {
    let mut done = 0;
    let mut at = 0;
    // The next `id:` line, looked for again only once passed: a frame holds one id and
    // many stamps, and searching from each stamp to the frame's end was quadratic.
    let mut next_id = find(buf, ID);
    loop {
        let stamp = find(&buf[at..], STAMP).map(|i| at + i);
        if next_id.is_some_and(|i| i < at) {
            next_id = find(&buf[at..], ID).map(|i| at + i);
        }
        let id = next_id;
        if let Some(i) = id
            && stamp.is_none_or(|s| i < s)
        {
            let value = i + ID.len();
            let Some(end) = buf[value..].iter().position(|&b| b == b'\n').map(|p| value + p) else {
                return carry_from(buf, i, None);
            };
            position = parse_position(&buf[value..end]);
            if let Some(p) = position {
                shared.split.frame(p, now);
            }
            (done, at) = (end, end);
            continue;
        }
        let Some(i) = stamp else { break };
        let digits = i + STAMP.len();
        let end = buf[digits..].iter().position(|b| !b.is_ascii_digit()).map(|p| digits + p);
        let Some(end) = end else {
            // The number may go on in the next read.
            return carry_from(buf, i, position);
        };
        if let Some(sent) = std::str::from_utf8(&buf[digits..end]).ok().and_then(|s| s.parse::<u64>().ok()) {
            shared.latency.record(now.saturating_sub(sent), 1);
            if let Some(p) = position {
                shared.split.message(p, sent);
            }
        }
        (done, at) = (end, end);
    }
    carry_from(buf, done.max(buf.len().saturating_sub(STAMP.len() - 1)), position)
}

fn carry_from(buf: &[u8], from: usize, position: Option<(u64, u64)>) -> Carry {
    let tail = &buf[from..];
    let mut carry = Carry { position, ..Carry::default() };
    let len = tail.len().min(carry.bytes.len());
    carry.bytes[..len].copy_from_slice(&tail[..len]);
    carry.len = len as u8;
    carry
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, needle)
}
