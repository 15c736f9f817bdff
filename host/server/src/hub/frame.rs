//! One SSE frame: what a tenant emits at one log position, serialised once. Usually one
//! SSE event, `event: NAME\nid: POSITION\ndata: [payloads]\n\n`. When keys expired at
//! that position (latest-value tenants), their removal comes first as
//! `event: NAME-expired\ndata: ["key",...]\n\n`; the `id:` line goes on the frame's last
//! SSE event only, so ids on the wire stay strictly increasing and a client that resumes
//! from a frame's id has received all of it. The frame keeps its events and removed keys
//! for key routing and resume filtering.

use bytes::{BufMut, Bytes, BytesMut};

use crate::bus::LogPosition;
use crate::event::Event;

/// Suffix of the SSE event name that carries a frame's removed keys.
const EXPIRED_SUFFIX: &str = "-expired";

/// One log position's SSE events, ready for the wire.
#[derive(Debug)]
pub struct Frame {
    pub position: LogPosition,
    /// `[event: …-expired\ndata: [keys]\n\n]event: …\nid: …\ndata: […]\n\n`
    pub wire: Bytes,
    /// Keys whose latest value was removed at this position, sorted; applied before
    /// `events`.
    pub(super) removed: Vec<String>,
    pub(super) events: Vec<Event>,
}

impl Frame {
    /// Serialises the removal of `removed` (if any), then `events` (if any, or if
    /// nothing was removed) as the frame of `event_name` at `position`.
    pub(super) fn new(
        event_name: &str,
        position: LogPosition,
        removed: Vec<String>,
        events: Vec<Event>,
    ) -> Self {
        let id = position.to_string();
        let mut wire = BytesMut::new();
        if !removed.is_empty() {
            let keys = serde_json::to_vec(&removed).expect("strings serialise");
            let expired_name = format!("{event_name}{EXPIRED_SUFFIX}");
            sse_event(&mut wire, &expired_name, events.is_empty().then_some(&id), &keys);
        }
        if !events.is_empty() || removed.is_empty() {
            let data = json_array(events.iter().map(|e| &e.payload));
            sse_event(&mut wire, event_name, Some(&id), &data);
        }
        Frame { position, wire: wire.freeze(), removed, events }
    }

    /// The part of this frame a client of `keys` gets (`None` when it has none of them).
    pub(super) fn only(&self, event_name: &str, keys: &dyn Fn(&str) -> bool) -> Option<Frame> {
        let removed: Vec<String> = self.removed.iter().filter(|k| keys(k)).cloned().collect();
        let events: Vec<Event> = self.events.iter().filter(|e| keys(&e.key)).cloned().collect();
        (!events.is_empty() || !removed.is_empty())
            .then(|| Frame::new(event_name, self.position, removed, events))
    }
}

/// Appends one SSE event: `event:`, `id:` when given, one `data:` line.
fn sse_event(wire: &mut BytesMut, name: &str, id: Option<&String>, data: &[u8]) {
    wire.reserve(data.len() + name.len() + 48);
    wire.put_slice(b"event: ");
    wire.put_slice(name.as_bytes());
    if let Some(id) = id {
        wire.put_slice(b"\nid: ");
        wire.put_slice(id.as_bytes());
    }
    wire.put_slice(b"\ndata: ");
    wire.put_slice(data);
    wire.put_slice(b"\n\n");
}

/// `[p1,p2,...]` of JSON payloads, as they are.
pub(super) fn json_array<'a>(payloads: impl IntoIterator<Item = &'a Bytes>) -> Bytes {
    let mut data = BytesMut::new();
    data.put_u8(b'[');
    for (i, p) in payloads.into_iter().enumerate() {
        if i > 0 {
            data.put_u8(b',');
        }
        data.put_slice(p);
    }
    data.put_u8(b']');
    data.freeze()
}
