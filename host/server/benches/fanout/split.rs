//! Where produce -> receipt goes, for streamgate: a frame's `id:` is its log position,
//! whose major part is the Redis stream's auto-id, the milliseconds at which the entry
//! was appended (same machine, same clock). So each delivery splits at the append:
//!
//! - **to log**: send time -> append (the Kafka hop, the source's linger, the `XADD`),
//!   per message;
//! - **log to receipt**: append -> receipt (the `XREAD`, the policy chain, the hub, the
//!   write), per frame and client;
//! - per frame, across all clients: append -> **first** receipt and first -> **last**
//!   receipt (how long one frame takes to reach every subscriber).
//!
//! The append time is whole milliseconds (rounded down), so "to log" reads up to 1 ms
//! low and "log to receipt" up to 1 ms high. Nchan's ids are not log positions: its
//! rows have no split.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::stats::Histogram;

/// Frames whose receipts are tracked at once (the map is cleared past this).
const MOST_FRAMES: usize = 1 << 20;

/// A frame's log position: the Redis entry id's two parts.
type Position = (u64, u64);

/// When a frame was appended, first received and last received (µs since the epoch).
type FrameTimes = (u64, u64, u64);

pub struct Split {
    pub to_log: Histogram,
    pub log_to_receipt: Histogram,
    frames: Mutex<HashMap<Position, FrameTimes>>,
}

/// Quantiles of one window's split, in ms: p50 and p99 of each part.
pub struct SplitSummary {
    pub to_log: Vec<f64>,
    pub log_to_receipt: Vec<f64>,
    pub log_to_first: Vec<f64>,
    pub first_to_last: Vec<f64>,
    pub frames: u64,
}

impl Split {
    pub fn new() -> Self {
        Split { to_log: Histogram::new(), log_to_receipt: Histogram::new(), frames: Mutex::default() }
    }

    pub fn reset(&self) {
        self.to_log.reset();
        self.log_to_receipt.reset();
        self.frames.lock().unwrap().clear();
    }

    /// A client received the frame at `position` at `now` (µs since the epoch).
    pub fn frame(&self, position: Position, now: u64) {
        let append = position.0 * 1_000;
        self.log_to_receipt.record(now.saturating_sub(append), 1);
        let mut frames = self.frames.lock().unwrap();
        if frames.len() >= MOST_FRAMES {
            frames.clear();
        }
        let seen = frames.entry(position).or_insert((append, now, now));
        seen.1 = seen.1.min(now);
        seen.2 = seen.2.max(now);
    }

    /// A message sent at `sent` was in the frame at `position`.
    pub fn message(&self, position: (u64, u64), sent: u64) {
        self.to_log.record((position.0 * 1_000).saturating_sub(sent), 1);
    }

    pub fn summary(&self) -> SplitSummary {
        let q = [0.5, 0.99];
        let (first, spread) = (Histogram::new(), Histogram::new());
        let frames = self.frames.lock().unwrap();
        for &(append, first_at, last_at) in frames.values() {
            first.record(first_at.saturating_sub(append), 1);
            spread.record(last_at - first_at, 1);
        }
        SplitSummary {
            to_log: self.to_log.summary(&q).1,
            log_to_receipt: self.log_to_receipt.summary(&q).1,
            log_to_first: first.summary(&q).1,
            first_to_last: spread.summary(&q).1,
            frames: frames.len() as u64,
        }
    }
}

impl SplitSummary {
    pub fn line(&self) -> String {
        let pair = |v: &[f64]| format!("{:.1} / {:.1}", v[0], v[1]);
        format!(
            "split (p50 / p99 ms): send -> log {}, log -> receipt {}, log -> first receipt {}, first -> last receipt {} ({} frames)",
            pair(&self.to_log),
            pair(&self.log_to_receipt),
            pair(&self.log_to_first),
            pair(&self.first_to_last),
            self.frames
        )
    }
}

/// The log position in an `id: MAJOR-MINOR` line's value.
pub fn parse_position(value: &[u8]) -> Option<(u64, u64)> {
    let text = std::str::from_utf8(value).ok()?;
    let (major, minor) = text.split_once('-')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}
