//! The policy worker's side of a shadow deploy, at the log entries that order it:
//! forking the live chain into a candidate (`start-shadow`), and making the candidate
//! the live chain (`promote-shadow`), with the state it built itself.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use streamgate_runtime::{StageSpec, StateTransfer, SwapReport};

use super::dispatch::{PrepareFailure, SwapOrder};
use super::shadow::Shadow;
use super::worker::Worker;
use crate::bus::LogPosition;

impl Worker {
    /// Forks the live chain into the order's candidate and starts it beside it (any
    /// earlier shadow stops). The fork's pause is the live worker's.
    pub(super) fn start_shadow(&mut self, order: SwapOrder) {
        let (tenant, position) = (self.metrics.tenant.clone(), order.position);
        if let Some(old) = self.shadow.take() {
            old.stop(format!("replaced by the shadow started at {}", position));
        }
        let prepared = order.prepared.blocking_recv().unwrap_or_else(|_| {
            Err(PrepareFailure { message: "preparation was cancelled".into(), local: false })
        });
        let started = prepared.map_err(|e| e.message).and_then(|next| {
            let policies = next.spec.policies.clone();
            let (candidate, fork) = self.chain.fork(next).map_err(|e| e.to_string())?;
            self.chain.record_drops(true);
            tracing::info!(tenant, position = %position, pause_us = fork.pause.as_micros() as u64,
                stages = ?fork.stages, ?policies, "shadow started");
            let (board, metrics) = (self.shadow_board.clone(), self.metrics.clone());
            Shadow::start(candidate, fork, position, board, metrics, super::shadow::QUEUE)
                .map_err(|e| format!("cannot start the shadow's thread: {e}"))
        });
        match started {
            Ok(shadow) => self.shadow = Some(shadow),
            Err(e) => {
                self.chain.record_drops(false);
                tracing::error!(tenant, position = %position, error = e, "shadow not started");
                self.shadow_board.refused(position, e);
            }
        }
        self.status.send_modify(|s| s.position = position);
    }

    /// At a `promote-shadow` entry: the running shadow, if it runs `policies` and is
    /// intact here, becomes the live chain with its own state; `None` (the caller swaps
    /// to the prepared chain, moving the live state) otherwise. Waits until the
    /// candidate has decided every entry before this one.
    pub(super) fn promotion(
        &mut self,
        promote: bool,
        position: LogPosition,
        version: u64,
        policies: &[StageSpec],
    ) -> Option<SwapReport> {
        if !promote {
            return None;
        }
        let tenant = self.metrics.tenant.clone();
        let started = Instant::now();
        let shadow = self.shadow.take();
        let candidate = match shadow {
            Some(s) if s.policies == policies => s.finish(),
            Some(s) => {
                s.stop(format!("a promotion of another chain at {}", position));
                Err("the shadow running here is of another chain".to_string())
            }
            None => Err("no shadow runs on this instance".to_string()),
        };
        match candidate {
            Ok(candidate) => {
                let from_version = self.chain.spec().version;
                let stages =
                    candidate.labels().into_iter().map(|stage| StateTransfer::Kept { stage }).collect();
                self.chain.promote(candidate, version);
                Shadow::promoted(&self.shadow_board, &self.metrics.shadow, position);
                Some(SwapReport {
                    from_version,
                    to_version: version,
                    stages,
                    reinjected: 0,
                    pause: started.elapsed(),
                })
            }
            Err(why) => {
                self.chain.record_drops(false);
                self.metrics.shadow.promotions_by_swap.fetch_add(1, Relaxed);
                tracing::warn!(tenant, position = %position, why,
                    "promotion without the shadow's state: a swap moving the live chain's state instead");
                self.shadow_board
                    .note(format!("promoted at {} by a swap from the live chain's state: {why}", position));
                None
            }
        }
    }
}
