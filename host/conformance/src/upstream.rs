//! The stages before a plugin in a tenant's chain (`--before`). A recorded log holds
//! what the chain's first stage sees; a stage further on sees only what the stages
//! before it pass on, when they pass it on. Replaying the recording through those
//! stages first (fresh, one push per entry at its log time, as the chain pushes them)
//! gives the log the plugin would see at its place: each entry then carries the events
//! they released at it, in the order released. What they dropped is gone, and what
//! they still held when the recording ends is left out (and counted): the tenant decided
//! it after the recording, beyond what the file can say.

use streamgate_runtime::{PolicyRuntime, SandboxConfig};

use crate::harness::{Ctx, Probe, Setup};
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

/// `recorded` as the stage after `before` (plugin refs, `builtin:NAME` or a file, each
/// with its config JSON, in chain order) would see it. Each stage before is driven as
/// the kit drives a plugin under test ([`Probe`]): an answer naming an event it does not
/// hold, a fault or an overrun stops the replay.
pub fn through(
    recorded: &RecordedLog,
    before: &[(String, String)],
    sandbox: &SandboxConfig,
) -> Result<(RecordedLog, Passed), String> {
    let runtime = PolicyRuntime::new(sandbox);
    let limits = runtime.limits(None);
    let mut ctxs = Vec::with_capacity(before.len());
    for (plugin, config) in before {
        let loaded = runtime.load_ref(plugin).map_err(|e| format!("--before {plugin}: {e}"))?;
        let setup = Setup::new(loaded.description(), config.clone());
        ctxs.push((plugin, Ctx::new(loaded, vec![setup], limits, 0, 0)));
    }
    let mut stages = Vec::with_capacity(ctxs.len());
    for (plugin, ctx) in &ctxs {
        let probe = Probe::create(ctx).map_err(|f| format!("--before {plugin}: {}", f.message))?;
        stages.push((plugin, probe));
    }
    let mut passed = Passed::default();
    let (mut seq, mut now) = (0, i64::MIN);
    let mut entries = Vec::with_capacity(recorded.entries.len());
    for entry in &recorded.entries {
        now = now.max(entry.now); // Never going back, as the worker keeps it.
        let mut events = entry.numbered_events(&mut seq);
        passed.given += events.len();
        for (plugin, probe) in &mut stages {
            let answer = probe
                .push(now, &events)
                .map_err(|f| format!("at {}: --before {plugin}: {}", entry.position, f.message))?;
            passed.dropped += answer.dropped.len();
            events = answer.released;
        }
        passed.passed_on += events.len();
        let kind = if events.is_empty() { EntryKind::Heartbeat } else { EntryKind::Events };
        let events = events.iter().map(RecordedEvent::from).collect();
        entries.push(RecordedEntry { position: entry.position.clone(), now: entry.now, kind, events });
    }
    passed.held = stages.iter().map(|(_, probe)| probe.held().len()).sum();
    let mut header = recorded.header.clone();
    header.events = passed.passed_on;
    Ok((RecordedLog { header, entries }, passed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(now: i64, times: &[i64]) -> RecordedEntry {
        let events: Vec<RecordedEvent> = times
            .iter()
            .map(|&t| RecordedEvent { key: t as u64 % 3, event_time: t, log_time: now, id: 0, tag: 0 })
            .collect();
        let kind = if events.is_empty() { EntryKind::Heartbeat } else { EntryKind::Events };
        RecordedEntry { position: format!("{now}-0"), now, kind, events }
    }

    fn recording(entries: Vec<RecordedEntry>) -> RecordedLog {
        RecordedLog::new("taxi", "sg:taxi:log", entries)
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
