//! Redis stream replies (`XREAD`, `XRANGE`) as log entries: a damaged entry stays in
//! place as [`Content::Undecodable`], so one bad write never stops a tenant.

use redis::Value;

use super::{BusError, Content, EntryBody, LogEntry, LogPosition, SkipReason};

pub(super) const FIELD_BATCH: &str = "b";
pub(super) const FIELD_HEARTBEAT: &str = "h";
pub(super) const FIELD_CONTROL: &str = "c";

/// Parses an `XREAD` reply for one stream (nil when the block timed out). A damaged
/// entry is kept in place as [`Content::Undecodable`] (the reader moves past it), so one
/// bad write never stops a tenant.
pub(super) fn parse_xread(reply: Value) -> Result<Vec<LogEntry>, BusError> {
    let malformed = |position: &str, reason: &str| BusError::Malformed {
        position: position.to_string(),
        reason: reason.to_string(),
    };
    let streams = match reply {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(streams) => streams,
        Value::Map(pairs) => pairs.into_iter().map(|(k, v)| Value::Array(vec![k, v])).collect(),
        _ => return Err(malformed("?", "XREAD reply is not an array")),
    };
    let mut entries = Vec::new();
    for stream in streams {
        let Value::Array(mut parts) = stream else { return Err(malformed("?", "stream is not a pair")) };
        let Some(Value::Array(items)) = parts.pop() else { return Err(malformed("?", "no entries")) };
        for item in items {
            let Value::Array(mut pair) = item else { return Err(malformed("?", "entry is not a pair")) };
            let fields = pair.pop();
            let id = match pair.pop() {
                Some(Value::BulkString(b)) => String::from_utf8_lossy(&b).into_owned(),
                Some(Value::SimpleString(s)) => s,
                _ => return Err(malformed("?", "entry id missing")),
            };
            let position: LogPosition = id.parse().map_err(|_| malformed(&id, "bad id"))?;
            let log_time = position.major as i64;
            entries.push(match entry_body(fields) {
                Ok(body) => LogEntry::decode(position, log_time, &body),
                Err(why) => {
                    let content = Content::Undecodable { reason: SkipReason::Fields, detail: why.into() };
                    LogEntry { position, log_time, content }
                }
            });
        }
    }
    Ok(entries)
}

/// The one field of a stream entry as an [`EntryBody`].
fn entry_body(fields: Option<Value>) -> Result<EntryBody, &'static str> {
    let Some(Value::Array(mut fields)) = fields else { return Err("no fields") };
    if fields.len() != 2 {
        return Err("expected exactly one field");
    }
    let value = fields.pop().unwrap();
    let name = fields.pop().unwrap();
    match (name, value) {
        (Value::BulkString(n), Value::BulkString(v)) if n == FIELD_BATCH.as_bytes() => {
            Ok(EntryBody::Batch(v.into()))
        }
        (Value::BulkString(n), _) if n == FIELD_HEARTBEAT.as_bytes() => Ok(EntryBody::Heartbeat),
        (Value::BulkString(n), Value::BulkString(v)) if n == FIELD_CONTROL.as_bytes() => {
            Ok(EntryBody::Control(v.into()))
        }
        _ => Err("unknown field"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, fields: Vec<Value>) -> Value {
        Value::Array(vec![Value::BulkString(id.into()), Value::Array(fields)])
    }

    fn bulk(s: &[u8]) -> Value {
        Value::BulkString(s.to_vec())
    }

    #[test]
    fn a_damaged_entry_is_skipped_in_place_and_its_neighbours_read() {
        let reply = Value::Array(vec![Value::Array(vec![
            bulk(b"k"),
            Value::Array(vec![
                entry("1-0", vec![bulk(b"h"), bulk(b"")]),
                entry("2-0", vec![bulk(b"zz"), bulk(b"?")]),
                entry("3-0", vec![bulk(b"b"), bulk(b"not a batch")]),
                entry("4-0", vec![]),
                entry("5-0", vec![bulk(b"h"), bulk(b"")]),
            ]),
        ])]);
        let entries = parse_xread(reply).unwrap();
        let positions: Vec<u64> = entries.iter().map(|e| e.position.major).collect();
        assert_eq!(positions, [1, 2, 3, 4, 5], "every entry keeps its place");
        assert_eq!(entries[0].content, Content::Heartbeat);
        for e in &entries[1..4] {
            assert!(matches!(e.content, Content::Undecodable { .. }), "{e:?}");
        }
        assert_eq!(entries[4].content, Content::Heartbeat);
    }
}
