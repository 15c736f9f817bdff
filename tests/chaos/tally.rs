//! Counting a scenario: produced, in the log, delivered per instance, lost, duplicated,
//! identical streams; one table row printed (and appended to `STREAMGATE_CHAOS_TABLE`
//! when set), then the README's promises asserted on it.

use std::collections::BTreeSet;
use std::io::Write;
use std::time::Duration;

use super::client::{Recorded, Recorder};

pub const HEADER: &str = "| scenario | produced | in the log | delivered per instance | lost | duplicated | identical streams | notes |\n\
                          | --- | ---: | ---: | --- | ---: | ---: | --- | --- |";

pub struct Row {
    pub scenario: String,
    pub produced: usize,
    /// Distinct produced ids found in the Redis log at the end.
    pub in_log: usize,
    pub delivered: Vec<usize>,
    /// Most produced ids missing from one instance's stream.
    pub lost: usize,
    /// Most ids one instance's stream delivered more than once.
    pub duplicated: usize,
    pub identical: Result<(), String>,
    pub notes: String,
}

impl Row {
    pub fn line(&self) -> String {
        let delivered: Vec<String> = self.delivered.iter().map(usize::to_string).collect();
        let identical = if self.identical.is_ok() { "yes" } else { "NO" };
        format!(
            "| {} | {} | {} | {} | {} | {} | {identical} | {} |",
            self.scenario,
            self.produced,
            self.in_log,
            delivered.join(" / "),
            self.lost,
            self.duplicated,
            self.notes
        )
    }

    /// Prints the row (with the header) and appends it to the table file, if any.
    pub fn print(&self) {
        println!("{HEADER}\n{}", self.line());
        if let Ok(path) = std::env::var("STREAMGATE_CHAOS_TABLE") {
            let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&path).unwrap();
            if file.metadata().is_ok_and(|m| m.len() == 0) {
                writeln!(file, "{HEADER}").unwrap();
            }
            writeln!(file, "{}", self.line()).unwrap();
        }
    }

    /// What the README promises for every scenario: nothing lost, nothing delivered
    /// twice, the same stream on every instance.
    pub fn assert_promises(&self) {
        assert_eq!(self.lost, 0, "events lost: {}", self.line());
        assert_eq!(self.duplicated, 0, "events delivered twice: {}", self.line());
        if let Err(why) = &self.identical {
            panic!("streams differ ({why}): {}", self.line());
        }
    }
}

/// The payload ids of a stream, in order.
pub fn ids_of(stream: &Recorded) -> Vec<String> {
    stream.frames.iter().flat_map(|f| f.payload_ids()).collect()
}

/// Counts a scenario from the produced ids, the log's ids and one full stream per
/// instance (each from the start of the log).
pub fn count(
    scenario: &str,
    produced: &[String],
    log: &[String],
    streams: &[Recorded],
    notes: String,
) -> Row {
    let wanted: BTreeSet<&str> = produced.iter().map(String::as_str).collect();
    let in_log =
        log.iter().map(String::as_str).filter(|id| wanted.contains(id)).collect::<BTreeSet<_>>().len();
    let (mut delivered, mut lost, mut duplicated) = (Vec::new(), 0, 0);
    for stream in streams {
        let ids = ids_of(stream);
        let seen: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
        let foreign: Vec<&&str> = seen.difference(&wanted).take(3).collect();
        assert!(foreign.is_empty(), "{scenario}: a stream delivered ids never produced: {foreign:?}");
        delivered.push(seen.len());
        lost = lost.max(wanted.len() - seen.len());
        duplicated = duplicated.max(ids.len() - seen.len());
    }
    Row {
        scenario: scenario.to_string(),
        produced: wanted.len(),
        in_log,
        delivered,
        lost,
        duplicated,
        identical: identical(streams),
        notes,
    }
}

/// Frame by frame and id by id, every stream equals the first; ids strictly increase.
pub fn identical(streams: &[Recorded]) -> Result<(), String> {
    for (n, s) in streams.iter().enumerate() {
        increasing(s).map_err(|e| format!("stream {n}: {e}"))?;
    }
    let Some(first) = streams.first() else { return Ok(()) };
    for (n, other) in streams.iter().enumerate().skip(1) {
        if let Some(k) = (0..first.frames.len().max(other.frames.len()))
            .find(|&k| first.frames.get(k) != other.frames.get(k))
        {
            let show = |s: &Recorded| s.frames.get(k).map(|f| format!("{} {}", f.id, f.data));
            return Err(format!(
                "stream {n} differs from stream 0 at frame {k}: {:?} vs {:?}",
                show(other),
                show(first)
            ));
        }
    }
    Ok(())
}

/// Frame ids (log positions `ms-n`) strictly increase.
pub fn increasing(s: &Recorded) -> Result<(), String> {
    let pos = |id: &str| -> (u64, u64) {
        let (a, b) = id.split_once('-').unwrap_or_else(|| panic!("frame id {id:?} is not ms-n"));
        (a.parse().unwrap(), b.parse().unwrap())
    };
    for w in s.frames.windows(2) {
        if pos(&w[0].id) >= pos(&w[1].id) {
            return Err(format!("frame id {} follows {}", w[1].id, w[0].id));
        }
    }
    Ok(())
}

/// Waits (bounded) until `client` has delivered every id of `produced`.
/// The ids of `produced` that `stream` did not deliver, in produced order.
pub fn missing(stream: &Recorded, produced: &[String]) -> Vec<String> {
    let seen: BTreeSet<String> = ids_of(stream).into_iter().collect();
    produced.iter().filter(|id| !seen.contains(*id)).cloned().collect()
}

pub async fn wait_complete(client: &Recorder, what: &str, produced: &[String], timeout: Duration) {
    wait_resumed(client, &Recorded::default(), what, produced, timeout).await;
}

/// Waits (bounded) until `before` (what a client saw elsewhere) and then `client` (where
/// it resumed) have delivered every id of `produced`.
pub async fn wait_resumed(
    client: &Recorder,
    before: &Recorded,
    what: &str,
    produced: &[String],
    timeout: Duration,
) {
    let wanted: BTreeSet<&str> = produced.iter().map(String::as_str).collect();
    let earlier = ids_of(before);
    client
        .wait_until(what, timeout, |r| {
            let mut ids = ids_of(r);
            ids.extend(earlier.iter().cloned());
            let seen: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
            let missing: Vec<&&str> = wanted.difference(&seen).collect();
            match missing.first() {
                None => Ok(()),
                Some(first) => Err(format!("{} ids missing, first {first}", missing.len())),
            }
        })
        .await;
}
