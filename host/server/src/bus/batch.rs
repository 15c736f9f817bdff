//! The encoding of a batch of events in a log entry, little-endian: `b'B'`, `u32`
//! count, then per event `u32` key length, key bytes, `i64` event time, `u64` id hash,
//! `u64` tag hash, `u32` payload length, payload bytes. Decoding never panics and
//! slices payloads out of the entry without copying.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::event::Event;

/// Encodes a batch for the bus.
pub fn encode_batch(events: &[Event]) -> Bytes {
    let size: usize = events.iter().map(|e| 32 + e.key.len() + e.payload.len()).sum();
    let mut buf = BytesMut::with_capacity(5 + size);
    buf.put_u8(b'B');
    buf.put_u32_le(events.len() as u32);
    for e in events {
        buf.put_u32_le(e.key.len() as u32);
        buf.put_slice(e.key.as_bytes());
        buf.put_i64_le(e.event_time);
        buf.put_u64_le(e.id);
        buf.put_u64_le(e.tag);
        buf.put_u32_le(e.payload.len() as u32);
        buf.put_slice(&e.payload);
    }
    buf.freeze()
}

/// A bus entry body that does not decode (another version wrote it, or it was damaged).
#[derive(Debug, thiserror::Error)]
#[error("undecodable batch: {0}")]
pub struct BatchDecodeError(&'static str);

/// Decodes a batch; payloads are zero-copy slices of `body`.
pub fn decode_batch(body: &Bytes) -> Result<Vec<Event>, BatchDecodeError> {
    let mut cur = body.clone();
    let need = |cur: &Bytes, n: usize| {
        if cur.remaining() < n { Err(BatchDecodeError("truncated")) } else { Ok(()) }
    };
    need(&cur, 5)?;
    if cur.get_u8() != b'B' {
        return Err(BatchDecodeError("not a batch"));
    }
    let count = cur.get_u32_le() as usize;
    let mut events = Vec::with_capacity(count.min(cur.remaining() / 16));
    for _ in 0..count {
        need(&cur, 4)?;
        let key_len = cur.get_u32_le() as usize;
        need(&cur, key_len + 28)?;
        let key = String::from_utf8(cur.split_to(key_len).to_vec())
            .map_err(|_| BatchDecodeError("key is not UTF-8"))?;
        let event_time = cur.get_i64_le();
        let (id, tag) = (cur.get_u64_le(), cur.get_u64_le());
        let payload_len = cur.get_u32_le() as usize;
        need(&cur, payload_len)?;
        let payload = cur.split_to(payload_len);
        events.push(Event { key, event_time, id, tag, payload });
    }
    if cur.has_remaining() {
        return Err(BatchDecodeError("trailing bytes"));
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_round_trip_and_reject_damage() {
        let events = vec![
            Event { key: "a".into(), event_time: -1, id: 7, tag: 0, payload: Bytes::from_static(b"{}") },
            Event {
                key: "ü".into(),
                event_time: i64::MAX,
                id: 0,
                tag: 9,
                payload: Bytes::from_static(b"{\"x\":1}"),
            },
        ];
        let body = encode_batch(&events);
        assert_eq!(decode_batch(&body).unwrap(), events);
        assert!(decode_batch(&body.slice(..body.len() - 1)).is_err());
        assert!(decode_batch(&Bytes::from_static(b"X")).is_err());
    }

    mod fuzz {
        //! No bytes in a log entry panic its decoders: random bodies, and valid batches
        //! cut short or with bytes flipped (which reach deep into the format).

        use proptest::prelude::*;

        use super::*;
        use crate::bus::{EntryBody, LogEntry, LogPosition};

        fn decode_any(body: Bytes) {
            let _ = decode_batch(&body);
            for entry in [EntryBody::Batch(body.clone()), EntryBody::Control(body)] {
                let _ = LogEntry::decode(LogPosition::default(), 0, &entry);
            }
        }

        fn events() -> impl Strategy<Value = Vec<Event>> {
            let event = (
                ".{0,12}",
                any::<i64>(),
                any::<u64>(),
                any::<u64>(),
                proptest::collection::vec(any::<u8>(), 0..40),
            )
                .prop_map(|(key, event_time, id, tag, payload)| Event {
                    key,
                    event_time,
                    id,
                    tag,
                    payload: payload.into(),
                });
            proptest::collection::vec(event, 0..8)
        }

        proptest! {
            #[test]
            fn random_bodies_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
                decode_any(Bytes::from(bytes));
            }

            #[test]
            fn batches_round_trip(events in events()) {
                prop_assert_eq!(decode_batch(&encode_batch(&events)).unwrap(), events);
            }

            #[test]
            fn damaged_batches_never_panic(events in events(), cut in any::<prop::sample::Index>(),
                                           flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6)) {
                let mut bytes = encode_batch(&events).to_vec();
                for (at, value) in flips {
                    let i = at.index(bytes.len());
                    bytes[i] = value;
                }
                decode_any(Bytes::from(bytes.clone()));
                bytes.truncate(cut.index(bytes.len() + 1));
                decode_any(Bytes::from(bytes));
            }
        }
    }
}
