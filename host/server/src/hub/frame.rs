//! One SSE frame, serialised once: `event: NAME\nid: POSITION\ndata: [payloads]\n\n`,
//! with the events it carries (for key routing and resume filtering).

use bytes::{BufMut, Bytes, BytesMut};

use crate::bus::LogPosition;
use crate::event::Event;

/// One SSE event, ready for the wire.
#[derive(Debug)]
pub struct Frame {
    pub position: LogPosition,
    /// `event: …\nid: …\ndata: […]\n\n`
    pub wire: Bytes,
    pub(super) events: Vec<Event>,
}

impl Frame {
    /// Serialises `events` as one frame of `event_name` at `position`.
    pub(super) fn new(event_name: &str, position: LogPosition, events: Vec<Event>) -> Self {
        let data = json_array(events.iter().map(|e| &e.payload));
        let mut wire = BytesMut::with_capacity(data.len() + event_name.len() + 48);
        wire.put_slice(b"event: ");
        wire.put_slice(event_name.as_bytes());
        wire.put_slice(b"\nid: ");
        wire.put_slice(position.to_string().as_bytes());
        wire.put_slice(b"\ndata: ");
        wire.put_slice(&data);
        wire.put_slice(b"\n\n");
        Frame { position, wire: wire.freeze(), events }
    }

    /// The part of this frame a client of `keys` gets (`None` when it has none of them).
    pub(super) fn only(&self, event_name: &str, keys: &dyn Fn(&str) -> bool) -> Option<Frame> {
        let events: Vec<Event> = self.events.iter().filter(|e| keys(&e.key)).cloned().collect();
        (!events.is_empty()).then(|| Frame::new(event_name, self.position, events))
    }
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
