//! A source event (key, event time, original payload), the batch encoding that carries
//! events through the bus, and the stable key hash plugins see.
//!
//! Batch wire format, little-endian: `b'B'`, `u32` count, then per event `u32` key
//! length, key bytes, `i64` event time, `u64` id hash, `u64` tag hash, `u32` payload
//! length, payload bytes.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde_json::Value;

/// One decoded event on its way from a source to the bus.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceEvent {
    pub key: String,
    /// ms since the Unix epoch, from the payload.
    pub event_time: i64,
    /// [`key_hash`] of the idempotency id, 0 when the tenant declares none.
    pub id: u64,
    /// [`key_hash`] of the tag, 0 when the tenant declares none.
    pub tag: u64,
    /// The original JSON object, one line.
    pub payload: Bytes,
}

/// Stable 64-bit hash (xxh3, seed 0) of keys, ids and tags: identical on every
/// instance and version, and the same function plugins get from the SDK.
pub fn key_hash(key: &str) -> u64 {
    streamgate_plugin_sdk::hash(key)
}

/// Why a source message was dropped instead of published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("payload larger than max_payload_bytes")]
    TooLarge,
    #[error("payload is not a JSON object")]
    NotJson,
    #[error("key missing or not a string/number")]
    BadKey,
    #[error("time missing or not an integer number of ms")]
    BadTime,
    #[error("id or tag missing or not a string/number")]
    BadId,
}

impl DecodeError {
    pub const ALL: [DecodeError; 5] = [
        DecodeError::TooLarge,
        DecodeError::NotJson,
        DecodeError::BadKey,
        DecodeError::BadTime,
        DecodeError::BadId,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DecodeError::TooLarge => "too_large",
            DecodeError::NotJson => "not_json",
            DecodeError::BadKey => "bad_key",
            DecodeError::BadTime => "bad_time",
            DecodeError::BadId => "bad_id",
        }
    }
}

/// Where in a payload a tenant finds its key and event time.
#[derive(Clone, Debug)]
pub struct Extractor {
    pub key_pointer: String,
    pub time_pointer: String,
    /// Optional: idempotency id and tag, hashed for the plugins.
    pub id_pointer: Option<String>,
    pub tag_pointer: Option<String>,
    pub max_payload_bytes: usize,
}

/// A string or number at `pointer`, as text.
fn text_at(value: &Value, pointer: &str) -> Option<String> {
    match value.pointer(pointer) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

impl Extractor {
    pub fn for_tenant(tenant: &crate::config::TenantConfig) -> Self {
        Extractor {
            key_pointer: tenant.key.clone(),
            time_pointer: tenant.time.clone(),
            id_pointer: tenant.id.clone(),
            tag_pointer: tenant.tag.clone(),
            max_payload_bytes: tenant.max_payload_bytes,
        }
    }

    /// Decodes one raw message into a [`SourceEvent`].
    pub fn decode(&self, raw: &[u8]) -> Result<SourceEvent, DecodeError> {
        if raw.len() > self.max_payload_bytes {
            return Err(DecodeError::TooLarge);
        }
        let value: Value = serde_json::from_slice(raw).map_err(|_| DecodeError::NotJson)?;
        if !value.is_object() {
            return Err(DecodeError::NotJson);
        }
        let key = text_at(&value, &self.key_pointer).ok_or(DecodeError::BadKey)?;
        let hash_at = |pointer: &Option<String>| match pointer {
            None => Ok(0),
            Some(p) => text_at(&value, p).map(|s| key_hash(&s)).ok_or(DecodeError::BadId),
        };
        let (id, tag) = (hash_at(&self.id_pointer)?, hash_at(&self.tag_pointer)?);
        let event_time = match value.pointer(&self.time_pointer) {
            Some(Value::Number(n)) => n
                .as_i64()
                .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9e15).map(|f| f as i64))
                .ok_or(DecodeError::BadTime)?,
            _ => return Err(DecodeError::BadTime),
        };
        // SSE data is line-based: keep the bytes as sent unless they span lines.
        let payload = if raw.iter().any(|&b| b == b'\n' || b == b'\r') {
            Bytes::from(serde_json::to_vec(&value).expect("a parsed value serialises"))
        } else {
            Bytes::copy_from_slice(raw)
        };
        Ok(SourceEvent { key, event_time, id, tag, payload })
    }
}

/// Encodes a batch for the bus.
pub fn encode_batch(events: &[SourceEvent]) -> Bytes {
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
pub fn decode_batch(body: &Bytes) -> Result<Vec<SourceEvent>, BatchDecodeError> {
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
        events.push(SourceEvent { key, event_time, id, tag, payload });
    }
    if cur.has_remaining() {
        return Err(BatchDecodeError("trailing bytes"));
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taxi() -> Extractor {
        Extractor {
            key_pointer: "/mediaId".into(),
            time_pointer: "/timestamp".into(),
            id_pointer: None,
            tag_pointer: None,
            max_payload_bytes: 1024,
        }
    }

    #[test]
    fn decodes_key_time_and_keeps_the_payload() {
        let raw = br#"{"mediaId":"taxi-1","lat":37.5,"lng":127.0,"timestamp":1763900000000}"#;
        let e = taxi().decode(raw).unwrap();
        assert_eq!(e.key, "taxi-1");
        assert_eq!(e.event_time, 1_763_900_000_000);
        assert_eq!(&e.payload[..], &raw[..]);
    }

    #[test]
    fn bad_input_is_a_typed_error() {
        let x = taxi();
        assert_eq!(x.decode(b"not json"), Err(DecodeError::NotJson));
        assert_eq!(x.decode(b"[1,2]"), Err(DecodeError::NotJson));
        assert_eq!(x.decode(br#"{"timestamp":1}"#), Err(DecodeError::BadKey));
        assert_eq!(x.decode(br#"{"mediaId":"a","timestamp":"x"}"#), Err(DecodeError::BadTime));
        assert_eq!(x.decode(br#"{"mediaId":"a","timestamp":1.5}"#), Err(DecodeError::BadTime));
        assert_eq!(x.decode(&vec![b' '; 2000]), Err(DecodeError::TooLarge));
    }

    #[test]
    fn multi_line_payloads_become_one_line() {
        let e = taxi().decode(b"{\"mediaId\": 7,\n \"timestamp\": 5}").unwrap();
        assert_eq!(e.key, "7");
        assert!(!e.payload.contains(&b'\n'));
    }

    #[test]
    fn batches_round_trip_and_reject_damage() {
        let events = vec![
            SourceEvent {
                key: "a".into(),
                event_time: -1,
                id: 7,
                tag: 0,
                payload: Bytes::from_static(b"{}"),
            },
            SourceEvent {
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

    #[test]
    fn ids_and_tags_are_hashed_when_declared() {
        let x =
            Extractor { id_pointer: Some("/eventId".into()), tag_pointer: Some("/kind".into()), ..taxi() };
        let e = x.decode(br#"{"mediaId":"u","timestamp":1,"eventId":"e-1","kind":"rank"}"#).unwrap();
        assert_eq!((e.id, e.tag), (key_hash("e-1"), key_hash("rank")));
        assert_eq!(x.decode(br#"{"mediaId":"u","timestamp":1,"kind":"rank"}"#), Err(DecodeError::BadId));
        let plain = taxi().decode(br#"{"mediaId":"u","timestamp":1,"eventId":"e-1"}"#).unwrap();
        assert_eq!((plain.id, plain.tag), (0, 0));
    }
}
