//! The stages before a plugin in a tenant's chain (`--before`). A recorded log holds
//! what the chain's first stage sees; a stage further on sees only what the stages
//! before it pass on, when they pass it on. Replaying the recording through those
//! stages first (fresh, one push per entry at its log time, as the chain pushes them)
//! gives the log the plugin would see at its place: each entry then carries the events
//! they released at it, in the order released. What they dropped is gone, and what
//! they still held when the recording ends is left out (and counted): the tenant decided
//! it after the recording, beyond what the file can say.

use std::collections::BTreeMap;

use streamgate_plugin_sdk::Event;
use streamgate_runtime::{PolicyRuntime, SandboxConfig, WasmStage, wit};

use crate::recorded::{EntryKind, RecordedEntry, RecordedEvent, RecordedLog};

/// What the stages before did with a recording's events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Passed {
    pub given: usize,
    pub passed_on: usize,
    pub dropped: usize,
    /// Still held when the recording ends.
    pub held: usize,
}

/// One stage before, with what it holds (given, not yet decided) by sequence number.
struct Before {
    name: String,
    stage: WasmStage,
    held: BTreeMap<u64, Event>,
}

/// `recorded` as the stage after `before` (plugin refs, `builtin:NAME` or a file, each
/// with its config JSON, in chain order) would see it.
pub fn through(
    recorded: &RecordedLog,
    before: &[(String, String)],
    sandbox: &SandboxConfig,
) -> Result<(RecordedLog, Passed), String> {
    let runtime = PolicyRuntime::new(sandbox);
    let limits = runtime.limits(None);
    let mut stages = Vec::with_capacity(before.len());
    for (plugin, config) in before {
        let loaded = runtime.load_ref(plugin).map_err(|e| format!("--before {plugin}: {e}"))?;
        let stage =
            loaded.stage(config, limits).map_err(|e| format!("--before {plugin} with {config}: {e}"))?;
        stages.push(Before { name: plugin.clone(), stage, held: BTreeMap::new() });
    }
    let mut passed = Passed::default();
    let (mut seq, mut now) = (0, i64::MIN);
    let mut entries = Vec::with_capacity(recorded.entries.len());
    for entry in &recorded.entries {
        now = now.max(entry.now); // Never going back, as the worker keeps it.
        let mut events = entry.numbered_events(&mut seq);
        passed.given += events.len();
        for b in &mut stages {
            events = b.push(now, events, &mut passed).map_err(|e| format!("at {}: {e}", entry.position))?;
        }
        passed.passed_on += events.len();
        let kind = if events.is_empty() { EntryKind::Heartbeat } else { EntryKind::Events };
        let events = events.iter().map(RecordedEvent::from).collect();
        entries.push(RecordedEntry { position: entry.position.clone(), now: entry.now, kind, events });
    }
    passed.held = stages.iter().map(|b| b.held.len()).sum();
    let mut header = recorded.header.clone();
    header.events = passed.passed_on;
    Ok((RecordedLog { header, entries }, passed))
}

impl Before {
    /// Gives `events` at `now`; what it released, in its order.
    fn push(&mut self, now: i64, events: Vec<Event>, passed: &mut Passed) -> Result<Vec<Event>, String> {
        let batch: Vec<wit::Event> = events.iter().map(wit::Event::from).collect();
        let decided =
            self.stage.push(now, &batch).map_err(|e| format!("--before {} faulted: {e}", self.name))?;
        self.held.extend(events.into_iter().map(|e| (e.seq, e)));
        let mut take = |seq: u64| {
            self.held
                .remove(&seq)
                .ok_or_else(|| format!("--before {} decided seq {seq}, which it did not hold", self.name))
        };
        let released = decided.released.iter().map(|&s| take(s)).collect::<Result<Vec<_>, _>>()?;
        for d in &decided.dropped {
            take(d.seq)?;
            passed.dropped += 1;
        }
        Ok(released)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recorded::Header;

    fn entry(now: i64, times: &[i64]) -> RecordedEntry {
        let events: Vec<RecordedEvent> = times
            .iter()
            .map(|&t| RecordedEvent { key: t as u64 % 3, event_time: t, log_time: now, id: 0, tag: 0 })
            .collect();
        let kind = if events.is_empty() { EntryKind::Heartbeat } else { EntryKind::Events };
        RecordedEntry { position: format!("{now}-0"), now, kind, events }
    }

    fn recording(entries: Vec<RecordedEntry>) -> RecordedLog {
        let header = Header {
            format: crate::recorded::FORMAT.into(),
            version: crate::recorded::VERSION,
            tenant: "taxi".into(),
            source: "sg:taxi:log".into(),
            entries: entries.len(),
            events: entries.iter().map(|e| e.events.len()).sum(),
        };
        RecordedLog { header, entries }
    }

    #[test]
    fn a_later_stage_sees_what_the_stages_before_pass_on_when_they_pass_it_on() {
        let log = recording(vec![
            entry(100_000, &[99_900, 50_000]),
            entry(100_500, &[99_800]),
            entry(101_000, &[]),
            entry(101_200, &[101_100]),
        ]);
        let before = [
            ("builtin:ordering".to_string(), r#"{"window_ms":1000}"#.to_string()),
            ("builtin:staleness".to_string(), r#"{"max_age_ms":30000}"#.to_string()),
        ];
        let (seen, passed) = through(&log, &before, &SandboxConfig::default()).unwrap();
        let times: Vec<Vec<i64>> =
            seen.entries.iter().map(|e| e.events.iter().map(|e| e.event_time).collect()).collect();
        // 50,000 is due at once and stale; the two others wait for their window, then
        // come out in time order; 101,100 is still in its window at the end.
        assert_eq!(times, [vec![], vec![], vec![99_800, 99_900], vec![]]);
        assert_eq!(seen.entries[0].kind, EntryKind::Heartbeat);
        assert_eq!(seen.entries[2].kind, EntryKind::Events);
        assert_eq!(seen.events(), 2, "the header counts what is passed on");
        assert_eq!(passed, Passed { given: 4, passed_on: 2, dropped: 1, held: 1 });
        let positions: Vec<&str> = seen.entries.iter().map(|e| e.position.as_str()).collect();
        assert_eq!(positions, ["100000-0", "100500-0", "101000-0", "101200-0"], "the entries stay");
    }

    #[test]
    fn a_stage_before_that_cannot_be_loaded_or_created_is_an_error() {
        let log = recording(vec![entry(1, &[1])]);
        let missing = [("/nonexistent/plugin.wasm".to_string(), String::new())];
        let err = through(&log, &missing, &SandboxConfig::default()).err().unwrap();
        assert!(err.starts_with("--before /nonexistent/plugin.wasm:"), "{err}");
        let bad = [("builtin:staleness".to_string(), r#"{"max_age_ms":-1}"#.to_string())];
        let err = through(&log, &bad, &SandboxConfig::default()).err().unwrap();
        assert!(err.contains("max_age_ms"), "{err}");
    }
}
