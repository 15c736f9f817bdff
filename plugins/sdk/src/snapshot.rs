//! Little-endian snapshot encoding helpers, so plugins need no serialisation crate.

use std::collections::BTreeMap;

use crate::{KeyMap, RestoreError};

/// Appends fixed-width little-endian integers to a buffer.
#[derive(Default)]
pub struct SnapshotWriter {
    buf: Vec<u8>,
}

impl SnapshotWriter {
    pub fn with_capacity(bytes: usize) -> Self {
        SnapshotWriter { buf: Vec::with_capacity(bytes) }
    }

    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// A per-key time map, as most latest-per-key policies keep: the count, then each
    /// key and time in key order. [`SnapshotReader::key_times`] reads it back.
    pub fn key_times(&mut self, map: &BTreeMap<u64, i64>) -> &mut Self {
        self.buf.reserve(4 + map.len() * 16);
        self.u32(map.len() as u32);
        for (&key, &time) in map {
            self.u64(key).i64(time);
        }
        self
    }

    /// A [`KeyMap`] of times, in the same format as [`SnapshotWriter::key_times`]
    /// (sorted by key, so equal maps write equal bytes).
    pub fn key_map(&mut self, map: &KeyMap<i64>) -> &mut Self {
        let mut pairs: Vec<(u64, i64)> = map.iter().map(|(&k, &t)| (k, t)).collect();
        pairs.sort_unstable();
        self.buf.reserve(4 + pairs.len() * 16);
        self.u32(pairs.len() as u32);
        for (key, time) in pairs {
            self.u64(key).i64(time);
        }
        self
    }

    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads what [`SnapshotWriter`] wrote; running short is a [`RestoreError::Corrupt`].
pub struct SnapshotReader<'a> {
    rest: &'a [u8],
}

impl<'a> SnapshotReader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        SnapshotReader { rest: bytes }
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], RestoreError> {
        if self.rest.len() < N {
            return Err(RestoreError::Corrupt(format!(
                "snapshot ends early: wanted {N} more bytes, {} left",
                self.rest.len()
            )));
        }
        let (head, tail) = self.rest.split_at(N);
        self.rest = tail;
        Ok(head.try_into().expect("split_at gives N bytes"))
    }

    pub fn u32(&mut self) -> Result<u32, RestoreError> {
        self.take().map(u32::from_le_bytes)
    }

    pub fn u64(&mut self) -> Result<u64, RestoreError> {
        self.take().map(u64::from_le_bytes)
    }

    pub fn i64(&mut self) -> Result<i64, RestoreError> {
        self.take().map(i64::from_le_bytes)
    }

    /// What [`SnapshotWriter::key_times`] wrote.
    pub fn key_times(&mut self) -> Result<BTreeMap<u64, i64>, RestoreError> {
        let mut map = BTreeMap::new();
        for _ in 0..self.u32()? {
            map.insert(self.u64()?, self.i64()?);
        }
        Ok(map)
    }

    /// What [`SnapshotWriter::key_map`] (or `key_times`) wrote, as a [`KeyMap`].
    pub fn key_map(&mut self) -> Result<KeyMap<i64>, RestoreError> {
        let n = self.u32()? as usize;
        // Never trust the count for an allocation: at most what the bytes can hold.
        let mut map = KeyMap::with_capacity_and_hasher(n.min(self.rest.len() / 16), Default::default());
        for _ in 0..n {
            map.insert(self.u64()?, self.i64()?);
        }
        Ok(map)
    }

    /// Errors unless every byte was read.
    pub fn finish(self) -> Result<(), RestoreError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(RestoreError::Corrupt(format!("{} trailing bytes in snapshot", self.rest.len())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_detects_truncation() {
        let mut w = SnapshotWriter::default();
        w.u32(7).u64(u64::MAX).i64(-5);
        let bytes = w.finish();
        let mut r = SnapshotReader::new(&bytes);
        assert_eq!(r.u32().unwrap(), 7);
        assert_eq!(r.u64().unwrap(), u64::MAX);
        assert_eq!(r.i64().unwrap(), -5);
        r.finish().unwrap();

        let mut short = SnapshotReader::new(&bytes[..10]);
        short.u32().unwrap();
        assert!(matches!(short.u64(), Err(RestoreError::Corrupt(_))));
    }

    #[test]
    fn key_times_round_trip_in_the_plain_layout() {
        let map = BTreeMap::from([(3, -1), (1, i64::MAX)]);
        let mut w = SnapshotWriter::default();
        w.key_times(&map);
        let bytes = w.finish();
        assert_eq!(bytes.len(), 4 + 2 * 16, "count, then key and time per entry");
        let mut r = SnapshotReader::new(&bytes);
        assert_eq!(r.key_times().unwrap(), map);
        r.finish().unwrap();
        assert!(SnapshotReader::new(&bytes[..20]).key_times().is_err(), "truncated");
    }
}
