//! Turning a raw source message into an [`Event`]: parse the JSON object, find the
//! tenant's key, event time and optional id and tag (JSON pointers), keep the payload
//! as sent (one line). Anything else is a typed [`DecodeError`], counted by the caller.

use bytes::Bytes;
use serde_json::Value;

use super::json_pick::{Pointer, pick};
use crate::event::{DecodeError, Event, key_hash};

/// Where in a payload a tenant finds its key and event time.
#[derive(Clone, Debug)]
pub struct Extractor {
    pub key_pointer: Pointer,
    pub time_pointer: Pointer,
    /// Optional: idempotency id and tag, hashed for the plugins.
    pub id_pointer: Option<Pointer>,
    pub tag_pointer: Option<Pointer>,
    pub max_payload_bytes: usize,
    /// Event times further than this (ms) ahead of the wall clock are refused.
    pub max_future_skew_ms: i64,
}

/// A string or number, as text.
fn text_of(value: Option<Value>) -> Option<String> {
    match value {
        Some(Value::String(s)) if !s.is_empty() => Some(s),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

impl Extractor {
    pub fn for_tenant(tenant: &crate::tenant::TenantConfig) -> Self {
        Extractor {
            key_pointer: Pointer::parse(&tenant.key),
            time_pointer: Pointer::parse(&tenant.time),
            id_pointer: tenant.id.as_deref().map(Pointer::parse),
            tag_pointer: tenant.tag.as_deref().map(Pointer::parse),
            max_payload_bytes: tenant.max_payload_bytes,
            max_future_skew_ms: i64::try_from(tenant.max_future_skew.as_millis()).unwrap_or(i64::MAX),
        }
    }

    /// Decodes one raw message into a [`Event`], against this instance's clock.
    pub fn decode(&self, raw: &[u8]) -> Result<Event, DecodeError> {
        self.decode_at(raw, crate::bus::wall_clock_ms())
    }

    /// Decodes one raw message into a [`Event`]; `now_ms` bounds its event time. (Ingest
    /// is before the log, so the local clock may decide here: what is refused never
    /// reaches any instance's policies.) One pass over the payload picks the key, time,
    /// id and tag (see [`json_pick`](super::json_pick)) without building the document.
    pub fn decode_at(&self, raw: &[u8], now_ms: i64) -> Result<Event, DecodeError> {
        if raw.len() > self.max_payload_bytes {
            return Err(DecodeError::TooLarge);
        }
        let mut pointers = vec![&self.key_pointer, &self.time_pointer];
        pointers.extend(self.id_pointer.iter().chain(&self.tag_pointer));
        let mut found = pick(raw, &pointers).map_err(|_| DecodeError::NotJson)?.into_iter();
        let (key, time) = (found.next().flatten(), found.next().flatten());
        let key = text_of(key).ok_or(DecodeError::BadKey)?;
        let mut hash_at = |pointer: &Option<Pointer>| match pointer {
            None => Ok(0),
            Some(_) => text_of(found.next().flatten()).map(|s| key_hash(&s)).ok_or(DecodeError::BadId),
        };
        let (id, tag) = (hash_at(&self.id_pointer)?, hash_at(&self.tag_pointer)?);
        let event_time = match time {
            Some(Value::Number(n)) => n
                .as_i64()
                .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9e15).map(|f| f as i64))
                .ok_or(DecodeError::BadTime)?,
            _ => return Err(DecodeError::BadTime),
        };
        if event_time > now_ms.saturating_add(self.max_future_skew_ms) {
            return Err(DecodeError::FutureTime);
        }
        // SSE data is line-based: keep the bytes as sent unless they span lines.
        let payload = if raw.iter().any(|&b| b == b'\n' || b == b'\r') {
            let value: Value = serde_json::from_slice(raw).map_err(|_| DecodeError::NotJson)?;
            Bytes::from(serde_json::to_vec(&value).expect("a parsed value serialises"))
        } else {
            Bytes::copy_from_slice(raw)
        };
        Ok(Event { key, event_time, id, tag, payload })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taxi() -> Extractor {
        Extractor {
            key_pointer: Pointer::parse("/mediaId"),
            time_pointer: Pointer::parse("/timestamp"),
            id_pointer: None,
            tag_pointer: None,
            max_payload_bytes: 1024,
            max_future_skew_ms: 60_000,
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
    fn event_times_too_far_ahead_are_refused() {
        let x = taxi();
        let now = 1_763_900_000_000_i64;
        let at = |t: i64| x.decode_at(format!(r#"{{"mediaId":"a","timestamp":{t}}}"#).as_bytes(), now);
        assert!(at(now + 60_000).is_ok(), "within the skew");
        assert_eq!(at(now + 60_001), Err(DecodeError::FutureTime));
        assert_eq!(at(i64::MAX), Err(DecodeError::FutureTime));
        assert_eq!(at(now * 1_000), Err(DecodeError::FutureTime), "microseconds for milliseconds");
        assert!(at(0).is_ok(), "the past is the policies' business");
    }

    #[test]
    fn multi_line_payloads_become_one_line() {
        let e = taxi().decode(b"{\"mediaId\": 7,\n \"timestamp\": 5}").unwrap();
        assert_eq!(e.key, "7");
        assert!(!e.payload.contains(&b'\n'));
    }

    #[test]
    fn ids_and_tags_are_hashed_when_declared() {
        let x = Extractor {
            id_pointer: Some(Pointer::parse("/eventId")),
            tag_pointer: Some(Pointer::parse("/kind")),
            ..taxi()
        };
        let e = x.decode(br#"{"mediaId":"u","timestamp":1,"eventId":"e-1","kind":"rank"}"#).unwrap();
        assert_eq!((e.id, e.tag), (key_hash("e-1"), key_hash("rank")));
        assert_eq!(x.decode(br#"{"mediaId":"u","timestamp":1,"kind":"rank"}"#), Err(DecodeError::BadId));
        let plain = taxi().decode(br#"{"mediaId":"u","timestamp":1,"eventId":"e-1"}"#).unwrap();
        assert_eq!((plain.id, plain.tag), (0, 0));
    }
}
