//! A client that behaves like a browser's `EventSource` behind a load balancer: when its
//! stream ends (cleanly or broken) or a connection is refused, it waits the last `retry:`
//! hint (else [`DEFAULT_RETRY`]) and connects again to the same address with
//! `Last-Event-ID`, recording everything as one joined stream.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::Notify;

use super::client::{Recorded, parse_block, wait_on};

/// The wait before a reconnect when the server gave no `retry:` (browsers use about 3 s;
/// shorter here, so a crash costs the suite less time).
pub const DEFAULT_RETRY: Duration = Duration::from_millis(1_000);

/// What the follower saw across its connections.
#[derive(Clone, Debug, Default)]
pub struct Followed {
    /// Every frame of every connection, in order (one joined stream).
    pub stream: Recorded,
    /// Connections answered 200.
    pub connections: usize,
    /// Streams that ended cleanly, after a `retry:` hint.
    pub hinted_ends: usize,
    /// Streams that broke (no clean end) or ended without a hint.
    pub broken_ends: usize,
    /// Attempts refused or answered with another status than 200: what happened to each
    /// (a browser's `EventSource` gives up for good on a status other than 200).
    pub refused: Vec<String>,
}

pub struct Follower {
    state: Arc<Mutex<Followed>>,
    changed: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Follower {
    /// Follows `base`'s (`http://host:port`) stream of `tenant` from the start of the log
    /// until dropped.
    pub fn start(base: &str, tenant: &str) -> Follower {
        let url = format!("{base}/tenants/{tenant}/events");
        let state = Arc::new(Mutex::new(Followed::default()));
        let changed = Arc::new(Notify::new());
        let task = tokio::spawn(follow(url, state.clone(), changed.clone()));
        Follower { state, changed, task }
    }

    pub fn followed(&self) -> Followed {
        self.state.lock().unwrap().clone()
    }

    /// Waits until `check` is `Ok`; after `timeout` panics naming `what` and the last `Err`.
    pub async fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&Followed) -> Result<(), String>,
    ) {
        let progress =
            |f: &Followed| format!("{} frames over {} connections", f.stream.frames.len(), f.connections);
        wait_on(&self.state, &self.changed, what, timeout, &mut check, progress).await;
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn follow(url: String, state: Arc<Mutex<Followed>>, changed: Arc<Notify>) {
    let client = reqwest::Client::new();
    loop {
        let (last_id, retry) = {
            let s = state.lock().unwrap();
            let retry = s.stream.retry.map_or(DEFAULT_RETRY, Duration::from_millis);
            (s.stream.last_id().unwrap_or("0-0").to_string(), retry)
        };
        let request = client.get(&url).header("accept", "text/event-stream").header("last-event-id", last_id);
        let refusal = match tokio::time::timeout(Duration::from_secs(10), request.send()).await {
            Ok(Ok(r)) if r.status() == 200 => Ok(r),
            Ok(Ok(r)) => {
                let status = r.status();
                let body = tokio::time::timeout(Duration::from_secs(2), r.text()).await;
                let body = body.ok().and_then(Result::ok).unwrap_or_default();
                Err(format!("status {status}: {}", body.trim().chars().take(120).collect::<String>()))
            }
            Ok(Err(e)) => Err(format!("error: {e}")),
            Err(_) => Err("no answer within 10 s".to_string()),
        };
        let response = match refusal {
            Ok(r) => r,
            Err(why) => {
                state.lock().unwrap().refused.push(why);
                changed.notify_waiters();
                tokio::time::sleep(retry).await;
                continue;
            }
        };
        state.lock().unwrap().connections += 1;
        changed.notify_waiters();
        let comments_before = state.lock().unwrap().stream.comments.len();
        let clean = read_stream(response, &state, &changed).await;
        {
            let mut s = state.lock().unwrap();
            // A clean end after the shutdown comment and a `retry:`: a stopping instance.
            let said_stop = s.stream.comments[comments_before..].iter().any(|c| c.contains("shutting down"));
            if clean && said_stop && s.stream.retry.is_some() {
                s.hinted_ends += 1
            } else {
                s.broken_ends += 1
            }
        }
        changed.notify_waiters();
        let retry = state.lock().unwrap().stream.retry.map_or(DEFAULT_RETRY, Duration::from_millis);
        tokio::time::sleep(retry).await;
    }
}

/// Records one connection's frames into the joined stream; whether it ended cleanly.
async fn read_stream(response: reqwest::Response, state: &Mutex<Followed>, changed: &Notify) -> bool {
    let mut body = response.bytes_stream();
    let mut buf = String::new();
    let clean = loop {
        match body.next().await {
            None => break true,
            Some(Err(_)) => break false,
            Some(Ok(chunk)) => {
                buf.push_str(std::str::from_utf8(&chunk).expect("SSE is UTF-8"));
                while let Some(end) = buf.find("\n\n") {
                    let block: String = buf.drain(..end + 2).collect();
                    parse_block(&block, &mut state.lock().unwrap().stream);
                }
                changed.notify_waiters();
            }
        }
    };
    // A block cut off by a broken connection is dropped: the resume starts after the
    // last whole frame, as a browser's does.
    clean
}
