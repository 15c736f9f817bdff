//! An SSE client for the fault suite: records every frame with its arrival time, the
//! `retry:` hint and how the stream ended, and can resume with `Last-Event-ID`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::Notify;

/// One `event:`/`id:`/`data:` block as received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub event: String,
    pub id: String,
    pub data: String,
}

impl Frame {
    /// The `id` field of every payload object in the frame.
    pub fn payload_ids(&self) -> Vec<String> {
        let values: Vec<serde_json::Value> = serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("frame {} data is not a JSON array ({e}): {}", self.id, self.data));
        values.iter().filter_map(|v| v["id"].as_str().map(str::to_string)).collect()
    }
}

/// Everything one connection saw.
#[derive(Clone, Debug, Default)]
pub struct Recorded {
    pub frames: Vec<Frame>,
    /// When each frame arrived.
    pub arrivals: Vec<Instant>,
    /// The last `retry:` value, ms.
    pub retry: Option<u64>,
    /// Comment lines (`: ...`), keep-alives included.
    pub comments: Vec<String>,
    /// The body ended cleanly (`Some(true)`) or with an error (`Some(false)`).
    pub ended: Option<bool>,
}

impl Recorded {
    pub fn last_id(&self) -> Option<&str> {
        self.frames.last().map(|f| f.id.as_str())
    }
}

/// A connection recording in the background; dropping it disconnects.
pub struct Recorder {
    state: Arc<Mutex<Recorded>>,
    changed: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    /// Connects to `base` (`http://host:port`) for `tenant`, from after `last_id` if given.
    pub async fn connect(base: &str, tenant: &str, last_id: Option<&str>) -> Recorder {
        let url = format!("{base}/tenants/{tenant}/events");
        let mut request = reqwest::Client::new().get(&url).header("accept", "text/event-stream");
        if let Some(id) = last_id {
            request = request.header("last-event-id", id);
        }
        let response = tokio::time::timeout(Duration::from_secs(10), request.send())
            .await
            .unwrap_or_else(|_| panic!("GET {url}: no answer within 10 s"))
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        assert_eq!(response.status(), 200, "GET {url}");
        let state = Arc::new(Mutex::new(Recorded::default()));
        let changed = Arc::new(Notify::new());
        let task = tokio::spawn({
            let (state, changed) = (state.clone(), changed.clone());
            async move {
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
                                parse_block(&block, &mut state.lock().unwrap());
                            }
                            changed.notify_waiters();
                        }
                    }
                };
                state.lock().unwrap().ended = Some(clean);
                changed.notify_waiters();
            }
        });
        Recorder { state, changed, task }
    }

    pub fn recorded(&self) -> Recorded {
        self.state.lock().unwrap().clone()
    }

    /// Waits until `check` is `Ok`; after `timeout` panics naming `what` and the last `Err`.
    pub async fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&Recorded) -> Result<(), String>,
    ) {
        let progress = |r: &Recorded| format!("{} frames received", r.frames.len());
        wait_on(&self.state, &self.changed, what, timeout, &mut check, progress).await;
    }
}

/// Waits until `check` of the state behind `state` is `Ok`, woken by `changed`; after
/// `timeout` panics naming `what`, the state's `progress` and the last `Err`.
pub async fn wait_on<T>(
    state: &Mutex<T>,
    changed: &Notify,
    what: &str,
    timeout: Duration,
    check: &mut impl FnMut(&T) -> Result<(), String>,
    progress: impl Fn(&T) -> String,
) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let notified = changed.notified();
        let Err(missing) = check(&state.lock().unwrap()) else { return };
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            let progress = progress(&state.lock().unwrap());
            panic!("timed out after {timeout:?} waiting for {what} ({progress}): {missing}");
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn parse_block(block: &str, into: &mut Recorded) {
    let (mut event, mut id, mut data) = (String::new(), String::new(), Vec::new());
    for line in block.lines() {
        if let Some(v) = line.strip_prefix("event: ") {
            event = v.to_string();
        } else if let Some(v) = line.strip_prefix("id: ") {
            id = v.to_string();
        } else if let Some(v) = line.strip_prefix("data: ") {
            data.push(v.to_string());
        } else if let Some(v) = line.strip_prefix("retry: ") {
            into.retry = Some(v.trim().parse().unwrap_or_else(|_| panic!("retry: {v:?} is not ms")));
        } else if let Some(v) = line.strip_prefix(':') {
            into.comments.push(v.trim().to_string());
        }
    }
    if !data.is_empty() {
        into.frames.push(Frame { event, id, data: data.join("\n") });
        into.arrivals.push(Instant::now());
    }
}
