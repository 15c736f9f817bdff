//! [`KeyMap`]: a hash map from 64-bit keys (key hashes, seqs, ids) with a fixed,
//! cheap hasher, for a policy's per-key state.
//!
//! `BTreeMap` keeps a policy deterministic by construction but costs a tree walk per
//! event; a `KeyMap` costs one multiply. Its hasher has no random seed, so the same
//! inserts give the same map on every instance; still, never let its iteration order
//! reach a decision or a snapshot (sort first, as [`SnapshotWriter::key_map`] does).
//!
//! [`SnapshotWriter::key_map`]: crate::SnapshotWriter::key_map

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A `HashMap<u64, V>` with [`KeyHasher`].
pub type KeyMap<V> = HashMap<u64, V, BuildHasherDefault<KeyHasher>>;

/// Hashes one `u64` by a multiply and a fold: enough spread for key hashes and for
/// sequential numbers alike, and the same on every machine.
#[derive(Clone, Copy, Default)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        // One 64-bit multiply (a 128-bit one is a library call in 32-bit Wasm), then the
        // well-mixed high half folded onto the low half: the table's index and tag bits
        // come from the low 32 bits on a 32-bit target, from both ends on a 64-bit one.
        let m = self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        m ^ (m >> 32)
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only reached for keys other than u64: fold the bytes in.
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = self.0.rotate_left(32) ^ v;
    }
}

/// An empty [`KeyMap`].
pub fn key_map<V>() -> KeyMap<V> {
    KeyMap::default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_keys_spread_over_low_and_high_bits() {
        let hashes: Vec<u64> = (0..1024u64)
            .map(|k| {
                let mut h = KeyHasher::default();
                h.write_u64(k);
                h.finish()
            })
            .collect();
        let low: std::collections::BTreeSet<u64> = hashes.iter().map(|h| h & 1023).collect();
        let high: std::collections::BTreeSet<u64> = hashes.iter().map(|h| h >> 57).collect();
        // 1,024 random draws from 1,024 buckets give about 647 distinct ones.
        assert!(low.len() > 560, "low bits pick buckets: {} distinct of 1024", low.len());
        assert_eq!(high.len(), 128, "the top seven bits tag entries");
        // On a 32-bit target (the plugins' Wasm) the tag is bits 25..32.
        let tag32: std::collections::BTreeSet<u64> = hashes.iter().map(|h| (h >> 25) & 127).collect();
        assert_eq!(tag32.len(), 128, "so are bits 25..32 on a 32-bit target");
    }

    #[test]
    fn the_same_inserts_give_the_same_iteration_order() {
        let fill = || {
            let mut m = key_map();
            for k in (0..500u64).map(|k| k.wrapping_mul(0x1234_5678_9ABC_DEF1)) {
                m.insert(k, k);
            }
            m.into_iter().collect::<Vec<_>>()
        };
        assert_eq!(fill(), fill());
    }
}
