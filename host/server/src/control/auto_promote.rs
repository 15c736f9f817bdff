//! The optional guard rail of a shadow deploy: promote the candidate by itself once its
//! diff has stayed within a budget for a span of log time ("no more than 0.1 % of
//! events differ for 10 minutes"). Watched on the instance that started the shadow,
//! which then publishes an ordinary promotion; a candidate fault ends the watch (the
//! shadow stopped itself).

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use streamgate_runtime::diff::{POINT_EVERY_MS, POINTS, Point};

use super::{ChainControl, ControlError};
use crate::bus::LogPosition;
use crate::tenant::shadow::ShadowState;

/// How often the watch reads the diff.
const WATCH_EVERY: Duration = Duration::from_millis(500);
/// Live decisions the span must hold before its rate counts as evidence: a quiet tenant
/// (heartbeats move log time on) would otherwise show 0 differences of 0 and promote a
/// candidate that never decided anything.
pub const MIN_DECIDED: u64 = 1_000;

/// Promote once at most `max_rate` differing events per live decision were seen over
/// the last `for_ms` of log time (and the shadow has run that long), out of at least
/// [`MIN_DECIDED`] live decisions.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AutoPromote {
    pub max_rate: f64,
    pub for_ms: u64,
}

impl AutoPromote {
    /// The budget must be a rate in [0, 1] over a span the diff's series covers.
    pub fn check(&self) -> Result<(), ControlError> {
        let longest = POINTS as u64 * POINT_EVERY_MS as u64;
        if !(0.0..=1.0).contains(&self.max_rate) {
            return Err(ControlError::InvalidGuard(format!(
                "auto_promote.max_rate is {}: give a share of events between 0 and 1 (0.001 = 0.1 %)",
                self.max_rate
            )));
        }
        if self.for_ms < POINT_EVERY_MS as u64 || self.for_ms > longest {
            return Err(ControlError::InvalidGuard(format!(
                "auto_promote.for_ms is {}: give between {POINT_EVERY_MS} and {longest} ms of log time",
                self.for_ms
            )));
        }
        Ok(())
    }

    /// Whether the diff's series shows the budget kept over the last `for_ms`.
    pub fn met(&self, series: &[Point]) -> bool {
        let Some(last) = series.last() else { return false };
        let since = last.log_time.saturating_sub(self.for_ms as i64);
        let Some(from) = series.iter().rev().find(|p| p.log_time <= since) else { return false };
        let decided = last.decided_live - from.decided_live;
        let differing = last.differing_events - from.differing_events;
        decided >= MIN_DECIDED && differing as f64 <= self.max_rate * decided as f64
    }
}

impl ChainControl {
    /// Watches the shadow started at `started_at` and promotes it once `guard` is met;
    /// ends when it stops, is replaced, or at shutdown.
    pub fn auto_promote(
        self: Arc<Self>,
        tenant: String,
        guard: AutoPromote,
        started_at: String,
        cancel: CancellationToken,
    ) {
        let Ok(ours) = started_at.parse::<LogPosition>() else { return };
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(WATCH_EVERY);
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let Ok(status) = self.shadow(&tenant) else { return };
                let since: Option<LogPosition> = status.started_at.as_deref().and_then(|p| p.parse().ok());
                if since.is_none_or(|p| p < ours) {
                    // Not started here yet (the answer came before this instance got there).
                    continue;
                }
                if status.state != ShadowState::Running || since != Some(ours) {
                    tracing::info!(tenant, state = ?status.state, "shadow no longer running; automatic promotion off");
                    return;
                }
                if !status.diff.is_some_and(|d| guard.met(&d.series)) {
                    continue;
                }
                match self.promote_shadow(&tenant).await {
                    Ok(a) => tracing::info!(
                        tenant,
                        version = a.version,
                        position = a.position,
                        max_rate = guard.max_rate,
                        for_ms = guard.for_ms,
                        "shadow promoted within its budget"
                    ),
                    Err(e) => tracing::warn!(tenant, error = %e, "automatic promotion failed"),
                }
                return;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(log_time: i64, decided_live: u64, differing_events: u64) -> Point {
        Point { position: String::new(), log_time, entries: 0, decided_live, differing_events }
    }

    #[test]
    fn the_budget_holds_over_the_whole_span_or_not_at_all() {
        let guard = AutoPromote { max_rate: 0.01, for_ms: 2000 };
        assert!(guard.check().is_ok());
        assert!(AutoPromote { max_rate: 2.0, for_ms: 2000 }.check().is_err());
        assert!(AutoPromote { max_rate: 0.01, for_ms: 10 }.check().is_err());
        assert!(AutoPromote { max_rate: 0.01, for_ms: 3_600_000 }.check().is_err());
        let early = [point(0, 0, 0), point(1000, 1000, 5)];
        assert!(!guard.met(&early), "not run for 2 s yet");
        // 5 differences in the first second, none after: over [1000, 3000] 0 of 2000.
        let later = [point(0, 0, 0), point(1000, 1000, 5), point(2000, 2000, 5), point(3000, 3000, 5)];
        assert!(guard.met(&later));
        // Over [0, 2000]: 25 of 2000, above 1 %.
        let over = [point(0, 0, 0), point(1000, 1000, 5), point(2000, 2000, 25)];
        assert!(!guard.met(&over));
        assert!(!guard.met(&[]));
    }

    #[test]
    fn a_quiet_span_is_no_evidence() {
        let guard = AutoPromote { max_rate: 0.01, for_ms: 2000 };
        let quiet = [point(0, 0, 0), point(1000, 0, 0), point(2000, 0, 0), point(3000, 0, 0)];
        assert!(!guard.met(&quiet), "0 differences of 0 decisions promotes nothing");
        let few = [point(0, 0, 0), point(3000, MIN_DECIDED - 1, 0)];
        assert!(!guard.met(&few), "fewer decisions than the minimum");
        let enough = [point(0, 0, 0), point(3000, MIN_DECIDED, 0)];
        assert!(guard.met(&enough));
    }
}
