//! Property runs over generated logs (and recorded ones the suite was given, after
//! them): case after case from the seed, and for the first
//! failing case a delta-debugging shrinker that drops batches and events while the
//! property still fails, so the report shows a small failing input.

use std::time::{Duration, Instant};

use crate::generate::Log;
use crate::harness::{Ctx, Failure, Setup, Trace, run_log};
use crate::report::Verdict;

/// Shrinking stops after this many tries or this long, whichever comes first.
const SHRINK_TRIES: usize = 500;
const SHRINK_TIME: Duration = Duration::from_secs(10);

/// Runs `property` on every generated log's run ([`Ctx::runs`]: made once, shared by
/// the checks); the first failure is shrunk (re-running each candidate in a fresh stage)
/// and reported with its input and config. A run that faulted or answered invalidly is
/// `decisions/valid`'s failure ([`every_run_completes`]): here it is not judged.
pub fn for_generated_logs(
    ctx: &Ctx,
    passed: &str,
    property: impl Fn(&Ctx, &Setup, &Log, &Trace) -> Result<(), Failure>,
) -> Verdict {
    judge_runs(ctx, passed, false, property)
}

/// `decisions/valid`: every generated log runs through a fresh stage and the flush
/// without a fault and with valid answers only.
pub fn every_run_completes(ctx: &Ctx, passed: &str) -> Verdict {
    judge_runs(ctx, passed, true, |_, _, _, _| Ok(()))
}

fn judge_runs(
    ctx: &Ctx,
    passed: &str,
    run_failures_fail: bool,
    property: impl Fn(&Ctx, &Setup, &Log, &Trace) -> Result<(), Failure>,
) -> Verdict {
    let (mut events, mut unjudged) = (0, 0);
    // Re-running a shrunk candidate: its own run failing is not this property failing,
    // unless this check is about runs failing.
    let rerun = |setup: &Setup, log: &Log| match run_log(ctx, setup, log) {
        Ok(t) => property(ctx, setup, log, &t).err(),
        Err(f) => run_failures_fail.then_some(f),
    };
    for (case, run) in ctx.runs().iter().enumerate() {
        let setup = &ctx.setups[run.setup];
        let log = &run.log;
        let outcome = match &run.trace {
            Ok(trace) => property(ctx, setup, log, trace),
            Err(failure) if run_failures_fail => Err(failure.clone()),
            Err(_) => {
                unjudged += 1;
                continue;
            }
        };
        events += log.events();
        if let Err(failure) = outcome {
            let original = (log.batches.len(), log.events());
            let (small, failure) = if failure.costly {
                (log.clone(), failure)
            } else {
                shrink(log.clone(), failure, |candidate| rerun(setup, candidate))
            };
            let which = match &run.recorded {
                Some(name) => format!("recorded log {name}"),
                None => format!("case {} of {} (seed {})", case + 1, ctx.cases, ctx.seed),
            };
            let note = format!(
                "{which}, under {}; shrunk from {} batches / {} events to {} / {}",
                setup.label(),
                original.0,
                original.1,
                small.batches.len(),
                small.events()
            );
            return Verdict::fail(failure.message, note, Some(small)).cases(case + 1);
        }
    }
    let judged = ctx.runs().len() - unjudged;
    if judged == 0 {
        return Verdict::skip("not run: no generated log ran to its end (see decisions/valid)");
    }
    let configs =
        if ctx.setups.len() > 1 { format!(" under {} configs", ctx.setups.len()) } else { String::new() };
    let left_out = if unjudged > 0 {
        format!("; {unjudged} logs whose run failed were not judged (see decisions/valid)")
    } else {
        String::new()
    };
    let recorded = ctx.runs().iter().filter(|r| r.recorded.is_some()).count();
    let recorded = if recorded > 0 { format!(", {recorded} of them recorded") } else { String::new() };
    Verdict::pass(format!("{passed} ({judged} logs{recorded}{configs}, {events} events{left_out})"))
        .cases(judged)
}

/// Delta debugging: remove chunks of batches, then chunks of events, halving the chunk
/// size, for as long as some removal keeps the failure.
pub fn shrink(mut log: Log, mut failure: Failure, fails: impl Fn(&Log) -> Option<Failure>) -> (Log, Failure) {
    let started = Instant::now();
    let mut tries = 0;
    let mut budget_left = || {
        tries += 1;
        tries <= SHRINK_TRIES && started.elapsed() < SHRINK_TIME
    };
    loop {
        let mut progress = false;
        // Whole batches.
        let mut chunk = log.batches.len().div_ceil(2);
        while chunk >= 1 {
            let mut at = 0;
            while at < log.batches.len() {
                if !budget_left() {
                    return (log, failure);
                }
                let mut candidate = log.clone();
                candidate.batches.drain(at..(at + chunk).min(candidate.batches.len()));
                match fails(&candidate) {
                    Some(f) => (log, failure, progress) = (candidate, f, true),
                    None => at += chunk,
                }
            }
            chunk /= 2;
        }
        // Events, across batches in log order.
        let mut chunk = log.events().div_ceil(2);
        while chunk >= 1 {
            let mut at = 0;
            while at < log.events() {
                if !budget_left() {
                    return (log, failure);
                }
                let candidate = without_events(&log, at, chunk);
                match fails(&candidate) {
                    Some(f) => (log, failure, progress) = (candidate, f, true),
                    None => at += chunk,
                }
            }
            chunk /= 2;
        }
        if !progress {
            return (log, failure);
        }
    }
}

/// The log without its events number `from..from + n` (counted across batches).
fn without_events(log: &Log, from: usize, n: usize) -> Log {
    let mut index = 0;
    let mut out = log.clone();
    for b in &mut out.batches {
        b.events.retain(|_| {
            let keep = index < from || index >= from + n;
            index += 1;
            keep
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::{Generator, Rng};
    use crate::shapes::Bounds;

    #[test]
    fn shrinks_to_the_two_events_that_matter() {
        let g = Generator::new(Bounds { max_age_ms: 30_000, window_ms: 1_000, forget_after_ms: None }, &[]);
        let (log, a, b) = (0..)
            .find_map(|seed| {
                let log = g.log(&mut Rng::new(seed));
                let a = *log.batches.first()?.events.first()?;
                let b = *log.batches.last()?.events.last()?;
                (log.batches.len() > 2 && a.seq != b.seq).then_some((log, a, b))
            })
            .unwrap();
        // "Fails" while both events are present.
        let fails = |l: &Log| {
            let seqs: Vec<u64> = l.batches.iter().flat_map(|b| b.events.iter().map(|e| e.seq)).collect();
            (seqs.contains(&a.seq) && seqs.contains(&b.seq)).then(|| Failure::new("both"))
        };
        assert!(fails(&log).is_some());
        let (small, _) = shrink(log, Failure::new("both"), fails);
        assert_eq!(small.events(), 2);
        assert_eq!(small.batches.len(), 2, "the batches of the two events");
    }
}
