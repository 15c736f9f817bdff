//! A lean SSE client for long runs: per frame it keeps the id, a hash of the frame's
//! blocks and its payload count, never the data (half an hour of a busy tenant would not
//! fit in memory), so streams can still be compared frame by frame and id by id. It can
//! stay on one instance or hop between instances, resuming with `Last-Event-ID`.

use std::hash::{DefaultHasher, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tokio_util::sync::CancellationToken;

/// One frame as a client saw it: its id, a hash of its blocks (an `-expired` block
/// before it included), and how many payloads it carried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Digest {
    pub id: String,
    pub hash: u64,
    pub payloads: usize,
}

/// Everything one client saw.
#[derive(Clone, Debug, Default)]
pub struct Tape {
    pub frames: Vec<Digest>,
    /// Payloads in all frames.
    pub payloads: u64,
    /// Connections made (1 for a client that never hops).
    pub connections: u32,
    /// Streams that ended while the client meant to stay.
    pub broken: u32,
}

/// A client recording in the background until dropped or cancelled.
pub struct TapeClient {
    tape: Arc<Mutex<Tape>>,
    task: tokio::task::JoinHandle<()>,
}

impl TapeClient {
    /// Connects to `bases[0]` at `path` (`/tenants/T/events?...`) from `last_id`; with
    /// `hop`, every `hop` it disconnects, waits a second and resumes on the next base
    /// with the last id it saw.
    pub fn start(
        bases: Vec<String>,
        path: String,
        last_id: Option<String>,
        hop: Option<Duration>,
        cancel: CancellationToken,
    ) -> TapeClient {
        let tape = Arc::new(Mutex::new(Tape::default()));
        let task = tokio::spawn({
            let tape = tape.clone();
            async move {
                let mut last = last_id;
                for n in 0.. {
                    let url = format!("{}{path}", bases[n % bases.len()]);
                    let session = follow(&url, last.clone(), &tape);
                    let ended = match hop {
                        Some(hop) => tokio::select! {
                            _ = cancel.cancelled() => return,
                            _ = tokio::time::sleep(hop) => false,
                            _ = session => true,
                        },
                        None => tokio::select! {
                            _ = cancel.cancelled() => return,
                            _ = session => true,
                        },
                    };
                    if ended {
                        tape.lock().unwrap().broken += 1;
                        if hop.is_none() {
                            return;
                        }
                    }
                    last = tape.lock().unwrap().frames.last().map(|f| f.id.clone()).or(last);
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        });
        TapeClient { tape, task }
    }

    pub fn tape(&self) -> Tape {
        self.tape.lock().unwrap().clone()
    }

    /// Payloads received so far.
    pub fn payloads(&self) -> u64 {
        self.tape.lock().unwrap().payloads
    }

    /// The id of the last frame received.
    pub fn last_id(&self) -> Option<String> {
        self.tape.lock().unwrap().frames.last().map(|f| f.id.clone())
    }
}

impl Drop for TapeClient {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One connection: records frames until the stream ends.
async fn follow(url: &str, last_id: Option<String>, tape: &Mutex<Tape>) {
    let mut request = reqwest::Client::new().get(url).header("accept", "text/event-stream");
    if let Some(id) = &last_id {
        request = request.header("last-event-id", id);
    }
    let response = tokio::time::timeout(Duration::from_secs(10), request.send())
        .await
        .unwrap_or_else(|_| panic!("GET {url}: no answer within 10 s"))
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(response.status(), 200, "GET {url}");
    tape.lock().unwrap().connections += 1;
    let mut body = response.bytes_stream();
    let (mut buf, mut pending) = (Vec::<u8>::new(), Pending::default());
    while let Some(Ok(chunk)) = body.next().await {
        buf.extend_from_slice(&chunk);
        let mut start = 0;
        while let Some(end) = memchr::memmem::find(&buf[start..], b"\n\n") {
            let block = std::str::from_utf8(&buf[start..start + end]).expect("SSE is UTF-8");
            if let Some(digest) = pending.block(block) {
                let mut tape = tape.lock().unwrap();
                tape.payloads += digest.payloads as u64;
                tape.frames.push(digest);
            }
            start += end + 2;
        }
        buf.drain(..start);
    }
}

/// Blocks of a frame read so far (an `-expired` block comes before the one with the id).
#[derive(Default)]
struct Pending {
    hasher: DefaultHasher,
    payloads: usize,
}

impl Pending {
    /// Takes one block; the frame's digest once its block with an `id:` came.
    fn block(&mut self, block: &str) -> Option<Digest> {
        let (mut id, mut event, mut data) = (None, "", None);
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("id: ") {
                id = Some(v.to_string());
            } else if let Some(v) = line.strip_prefix("event: ") {
                event = v;
            } else if let Some(v) = line.strip_prefix("data: ") {
                data = Some(v);
            }
        }
        let data = data?;
        self.hasher.write(event.as_bytes());
        self.hasher.write(data.as_bytes());
        if !event.ends_with("-expired") {
            self.payloads += serde_json::from_str::<Vec<serde::de::IgnoredAny>>(data)
                .unwrap_or_else(|e| panic!("frame data is not a JSON array ({e}): {data}"))
                .len();
        }
        let id = id?;
        let hash = std::mem::take(&mut self.hasher).finish();
        Some(Digest { id, hash, payloads: std::mem::take(&mut self.payloads) })
    }
}

/// `a` and `b` hold the same frames (ids and contents) in the same order.
pub fn same(a: &Tape, b: &Tape) -> Result<(), String> {
    let n = a.frames.len().max(b.frames.len());
    match (0..n).find(|&k| a.frames.get(k) != b.frames.get(k)) {
        None => Ok(()),
        Some(k) => Err(format!("frame {k} differs: {:?} vs {:?}", a.frames.get(k), b.frames.get(k))),
    }
}

/// A client that hopped between instances saw exactly a stretch of `reference` (a
/// client that saw the whole stream): from its first frame to its last, every frame,
/// none twice, each the same.
pub fn stretch_of(mover: &Tape, reference: &Tape) -> Result<(), String> {
    let Some(first) = mover.frames.first() else { return Err("it received no frame".into()) };
    let at = reference
        .frames
        .binary_search_by_key(&position(&first.id), |f| position(&f.id))
        .map_err(|_| format!("its first frame {} is not in the reference stream", first.id))?;
    let expected = &reference.frames[at..(at + mover.frames.len()).min(reference.frames.len())];
    match (0..mover.frames.len()).find(|&k| expected.get(k) != Some(&mover.frames[k])) {
        None => Ok(()),
        Some(k) => Err(format!(
            "its frame {k} (after {} connections) is {:?}, the reference has {:?}",
            mover.connections,
            mover.frames[k],
            expected.get(k)
        )),
    }
}

/// A log position `ms-n`, ordered.
pub fn position(id: &str) -> (u64, u64) {
    let (a, b) = id.split_once('-').unwrap_or_else(|| panic!("frame id {id:?} is not ms-n"));
    (a.parse().unwrap(), b.parse().unwrap())
}
