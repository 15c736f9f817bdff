//! The checkpoint's wire form: a versioned binary encoding (magic `SGCP`, format
//! version, then length-prefixed fields, little-endian), and the SHA-256 digest of it
//! that instances compare. Decoding checks every length against what is left, so a
//! damaged or truncated blob is an error, never a panic or a huge allocation.

use bytes::Bytes;
use sha2::{Digest, Sha256};
use streamgate_runtime::{ChainSpec, ChainState, Event, HeldState, StageState};

use super::Checkpoint;
use crate::bus::LogPosition;
use crate::hub::{HubState, KeptValue};

const MAGIC: &[u8; 4] = b"SGCP";
/// Bumped whenever the layout changes; other versions are refused (full replay).
pub const FORMAT_VERSION: u16 = 1;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CodecError {
    #[error("not a checkpoint (no SGCP magic)")]
    Magic,
    #[error("checkpoint format {0} (this version reads {FORMAT_VERSION})")]
    Version(u16),
    #[error("truncated at byte {0}")]
    Truncated(usize),
    #[error("bad field at byte {at}: {why}")]
    Field { at: usize, why: String },
    #[error("{0} bytes after the end")]
    Trailing(usize),
}

/// Hex SHA-256 of an encoded checkpoint.
pub fn digest(blob: &[u8]) -> String {
    Sha256::digest(blob).iter().map(|b| format!("{b:02x}")).collect()
}

pub fn encode(c: &Checkpoint) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(4096));
    w.0.extend_from_slice(MAGIC);
    w.0.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    w.str(&c.tenant);
    w.position(c.position);
    w.i64(c.now);
    let chain = &c.chain;
    w.spec(&chain.spec);
    w.opt(chain.previous.as_ref(), Writer::spec);
    w.u64(chain.stages.len() as u64);
    for s in &chain.stages {
        w.str(&s.plugin_digest);
        w.u64(s.state_version as u64);
        w.opt(s.snapshot.as_deref(), Writer::bytes);
        w.u64(s.held);
        w.opt(s.reported.as_deref(), Writer::str);
        w.i64(s.restart_at);
        w.u64(s.backoff_ms);
    }
    w.u64(chain.held.len() as u64);
    for h in &chain.held {
        w.u64(h.seq);
        w.u64(h.stage as u64);
        w.i64(h.log_time);
        w.str(&h.event.key);
        w.i64(h.event.event_time);
        w.u64(h.event.id);
        w.u64(h.event.tag);
        w.bytes(&h.event.payload);
    }
    w.u64(chain.next_seq);
    w.u64(chain.reinject.len() as u64);
    for &(seq, stage) in &chain.reinject {
        w.u64(seq);
        w.u64(stage as u64);
    }
    w.opt(c.hub.last_position, |w, p| w.position(p));
    w.u64(c.hub.next_seq);
    w.u64(c.hub.latest.len() as u64);
    for v in &c.hub.latest {
        w.str(&v.key);
        w.u64(v.tag);
        w.i64(v.event_time);
        w.u64(v.seq);
        w.bytes(&v.payload);
    }
    w.0
}

pub fn decode(blob: &[u8]) -> Result<Checkpoint, CodecError> {
    if blob.len() < 6 || &blob[..4] != MAGIC {
        return Err(CodecError::Magic);
    }
    let version = u16::from_le_bytes([blob[4], blob[5]]);
    if version != FORMAT_VERSION {
        return Err(CodecError::Version(version));
    }
    let mut r = Reader { blob, at: 6 };
    let tenant = r.str()?;
    let position = r.position()?;
    let now = r.i64()?;
    let spec = r.spec()?;
    let previous = r.opt(Reader::spec)?;
    let stages = r.list(|r| {
        Ok(StageState {
            plugin_digest: r.str()?,
            state_version: u32::try_from(r.u64()?).map_err(|_| r.bad("state version"))?,
            snapshot: r.opt(|r| Ok(r.bytes()?.to_vec()))?,
            held: r.u64()?,
            reported: r.opt(Reader::str)?,
            restart_at: r.i64()?,
            backoff_ms: r.u64()?,
        })
    })?;
    let held = r.list(|r| {
        Ok(HeldState {
            seq: r.u64()?,
            stage: r.u64()? as usize,
            log_time: r.i64()?,
            event: Event {
                key: r.str()?,
                event_time: r.i64()?,
                id: r.u64()?,
                tag: r.u64()?,
                payload: Bytes::copy_from_slice(r.bytes()?),
            },
        })
    })?;
    let next_seq = r.u64()?;
    let reinject = r.list(|r| Ok((r.u64()?, r.u64()? as usize)))?;
    let last_position = r.opt(Reader::position)?;
    let hub_next_seq = r.u64()?;
    let latest = r.list(|r| {
        Ok(KeptValue {
            key: r.str()?,
            tag: r.u64()?,
            event_time: r.i64()?,
            seq: r.u64()?,
            payload: Bytes::copy_from_slice(r.bytes()?),
        })
    })?;
    if r.at != blob.len() {
        return Err(CodecError::Trailing(blob.len() - r.at));
    }
    let chain = ChainState { spec, stages, held, next_seq, reinject, previous };
    let hub = HubState { last_position, next_seq: hub_next_seq, latest };
    Ok(Checkpoint { tenant, position, now, chain, hub })
}

struct Writer(Vec<u8>);

impl Writer {
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u64(b.len() as u64);
        self.0.extend_from_slice(b);
    }
    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
    fn position(&mut self, p: LogPosition) {
        self.u64(p.major);
        self.u64(p.minor);
    }
    fn spec(&mut self, s: &ChainSpec) {
        self.str(&serde_json::to_string(s).expect("a chain spec serialises"));
    }
    fn opt<T>(&mut self, v: Option<T>, put: impl FnOnce(&mut Self, T)) {
        match v {
            None => self.0.push(0),
            Some(v) => {
                self.0.push(1);
                put(self, v);
            }
        }
    }
}

struct Reader<'a> {
    blob: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn bad(&self, why: &str) -> CodecError {
        CodecError::Field { at: self.at, why: why.into() }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.blob.len());
        let end = end.ok_or(CodecError::Truncated(self.at))?;
        let part = &self.blob[self.at..end];
        self.at = end;
        Ok(part)
    }
    fn u64(&mut self) -> Result<u64, CodecError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn i64(&mut self) -> Result<i64, CodecError> {
        Ok(i64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn bytes(&mut self) -> Result<&'a [u8], CodecError> {
        let n = self.u64()?;
        self.take(usize::try_from(n).map_err(|_| self.bad("length"))?)
    }
    fn str(&mut self) -> Result<String, CodecError> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| self.bad("not UTF-8"))
    }
    fn position(&mut self) -> Result<LogPosition, CodecError> {
        Ok(LogPosition { major: self.u64()?, minor: self.u64()? })
    }
    fn spec(&mut self) -> Result<ChainSpec, CodecError> {
        let text = self.str()?;
        serde_json::from_str(&text).map_err(|e| self.bad(&format!("chain spec: {e}")))
    }
    fn opt<T>(
        &mut self,
        get: impl FnOnce(&mut Self) -> Result<T, CodecError>,
    ) -> Result<Option<T>, CodecError> {
        match self.take(1)?[0] {
            0 => Ok(None),
            1 => get(self).map(Some),
            _ => Err(self.bad("option tag")),
        }
    }
    /// A count, then that many items; the count is checked against the bytes left
    /// (every item takes at least one), so a damaged count allocates nothing.
    fn list<T>(
        &mut self,
        mut get: impl FnMut(&mut Self) -> Result<T, CodecError>,
    ) -> Result<Vec<T>, CodecError> {
        let n = self.u64()?;
        if n > (self.blob.len() - self.at) as u64 {
            return Err(self.bad("count larger than the rest"));
        }
        (0..n).map(|_| get(self)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamgate_runtime::StageSpec;

    fn sample() -> Checkpoint {
        let event =
            Event { key: "taxi-1".into(), event_time: 5, id: 7, tag: 0, payload: Bytes::from_static(b"{}") };
        Checkpoint {
            tenant: "taxi".into(),
            position: LogPosition { major: 1_763_900_000_000, minor: 3 },
            now: 1_763_900_000_000,
            chain: ChainState {
                spec: ChainSpec { version: 2, policies: vec![StageSpec::new("builtin:dedupe", "")] },
                stages: vec![StageState {
                    plugin_digest: "sha256:ab".into(),
                    state_version: 1,
                    snapshot: Some(vec![1, 2, 3]),
                    held: 1,
                    reported: None,
                    restart_at: i64::MIN,
                    backoff_ms: 1_000,
                }],
                held: vec![HeldState { seq: 9, stage: 0, log_time: 4, event }],
                next_seq: 10,
                reinject: vec![(9, 0)],
                previous: Some(ChainSpec::default()),
            },
            hub: HubState {
                last_position: Some(LogPosition { major: 1, minor: 0 }),
                next_seq: 1,
                latest: vec![KeptValue {
                    key: "taxi-1".into(),
                    tag: 0,
                    event_time: 5,
                    seq: 0,
                    payload: Bytes::from_static(b"{\"a\":1}"),
                }],
            },
        }
    }

    #[test]
    fn a_checkpoint_reads_back_as_written_and_its_digest_is_stable() {
        let c = sample();
        let blob = encode(&c);
        assert_eq!(decode(&blob).unwrap(), c);
        assert_eq!(digest(&blob), digest(&encode(&c)));
        assert_eq!(digest(&blob).len(), 64);
    }

    #[test]
    fn damaged_truncated_or_foreign_bytes_are_errors() {
        let blob = encode(&sample());
        for cut in [0, 5, 6, 20, blob.len() - 1] {
            assert!(decode(&blob[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = blob.clone();
        longer.push(0);
        assert_eq!(decode(&longer), Err(CodecError::Trailing(1)));
        let mut other = blob.clone();
        other[4] = 9;
        assert_eq!(decode(&other), Err(CodecError::Version(9)));
        // A huge count is refused before anything is allocated.
        let mut huge = blob[..6].to_vec();
        huge.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(decode(&huge), Err(CodecError::Truncated(_) | CodecError::Field { .. })));
    }
}
