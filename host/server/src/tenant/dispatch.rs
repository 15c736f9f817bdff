//! Between the log reader and the policy worker: forwards entries in log order and
//! turns each control entry into an order: a chain change becomes a swap order whose
//! chain is prepared (plugins fetched, compiled, stages created) concurrently, off the
//! event path; a reported stage fault becomes a fault order; a shadow's start is a
//! start order whose candidate is prepared the same way, and its promotion a swap order
//! marked as one. The worker acts when it
//! reaches the order's position, so every instance acts at the same entry.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use streamgate_runtime::{ChainSpec, PreparedChain, StageLimits};

use crate::bus::{Content, Control, LogEntry, LogPosition};
use crate::policy::{Catalog, CatalogError, ChainRecord, in_log_order};

/// Attempts to prepare a chain when the plugin store is unreachable.
const PREPARE_ATTEMPTS: u32 = 5;

/// What the worker gets, in log order.
pub enum Work {
    Entry(LogEntry),
    Swap(SwapOrder),
    Fault(FaultOrder),
    /// Start a shadow of the order's chain (`promote` is false).
    StartShadow(SwapOrder),
    StopShadow {
        position: LogPosition,
        reason: String,
        /// Only the shadow started here (`None`: whichever runs).
        started_at: Option<LogPosition>,
    },
}

/// Switch to a chain at a log position.
pub struct SwapOrder {
    pub position: LogPosition,
    pub log_time: i64,
    pub version: u64,
    /// Switch only if the running chain has this version (a revert).
    pub only_from: Option<u64>,
    /// A shadow's promotion: take the shadow's chain if it runs here intact.
    pub promote: bool,
    /// After the switch, keep no chain for `last-good` to go back to: the chain starts
    /// as `last-good`'s own target, which on the instances that went back has none.
    pub forget_previous: bool,
    pub reason: String,
    pub prepared: oneshot::Receiver<Result<PreparedChain, PrepareFailure>>,
}

/// Why a chain could not be prepared on this instance.
#[derive(Debug)]
pub struct PrepareFailure {
    pub message: String,
    /// Only this instance failed (its plugin store was out of reach): the others may
    /// have switched, so this one must tell them it did not.
    pub local: bool,
}

/// Fault a stage at a log position (an overrun some instance reported).
pub struct FaultOrder {
    pub position: LogPosition,
    pub log_time: i64,
    pub version: u64,
    pub stage: usize,
    pub plugin: String,
    pub reason: String,
}

pub struct Dispatcher {
    tenant: String,
    catalog: Arc<Catalog>,
    limits: StageLimits,
    /// Whether the chain in force before the first entry comes from the chain history
    /// (not when the tenant started from a checkpoint, which names it).
    from_history: bool,
}

impl Dispatcher {
    pub fn new(tenant: String, catalog: Arc<Catalog>, limits: StageLimits, from_history: bool) -> Self {
        Dispatcher { tenant, catalog, limits, from_history }
    }

    /// Starts preparing `chain` now; the order carries the result to the worker.
    fn order(&self, chain: ChainSpec, reason: String, position: LogPosition, log_time: i64) -> SwapOrder {
        let (tx, rx) = oneshot::channel();
        let (catalog, limits, tenant) = (self.catalog.clone(), self.limits, self.tenant.clone());
        let version = chain.version;
        tokio::spawn(async move {
            let mut attempt = 1;
            let result = loop {
                match catalog.prepare(&chain, limits, false, false).await {
                    Err(CatalogError::Store(e)) if attempt < PREPARE_ATTEMPTS => {
                        tracing::warn!(tenant, version, error = %e, "plugin store unreachable; retrying");
                        tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                        attempt += 1;
                    }
                    other => {
                        break other.map_err(|e| PrepareFailure {
                            local: matches!(e, CatalogError::Store(_)),
                            message: e.to_string(),
                        });
                    }
                }
            };
            let _ = tx.send(result);
        });
        SwapOrder {
            position,
            log_time,
            version,
            only_from: None,
            promote: false,
            forget_previous: false,
            reason,
            prepared: rx,
        }
    }

    /// The chain that was active before `first` (the oldest entry this instance reads),
    /// set through the admin API or gone back to by `last-good`, with the chain its peers
    /// keep for `last-good`: later changes arrive as control entries in the log.
    async fn startup_orders(&self, first: &LogEntry) -> Vec<SwapOrder> {
        let history = match self.catalog.store().chain_history(&self.tenant).await {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(tenant = %self.tenant, error = %e,
                    "cannot read the chain history; running the configured chain");
                return Vec::new();
            }
        };
        let (before, Some(active)) = active_before(history, first.position) else { return Vec::new() };
        tracing::info!(tenant = %self.tenant, version = active.chain.version, since = %active.position,
            last_good = active.last_good, "starting with the chain active before the first entry");
        let at = |record: ChainRecord| {
            let reason = format!("active since {} ({})", record.position, record.reason);
            self.order(record.chain, reason, first.position, first.log_time)
        };
        if active.last_good {
            return vec![SwapOrder { forget_previous: true, ..at(active) }];
        }
        // Peers keep the chain that ran before this one for `last-good`: switch through it.
        before.map(at).into_iter().chain([at(active)]).collect()
    }
}

/// Of the recorded chains, the one the active one replaced and the one active at
/// `first`: the newest two recorded before `first` by log position.
fn active_before(
    history: Vec<ChainRecord>,
    first: LogPosition,
) -> (Option<ChainRecord>, Option<ChainRecord>) {
    let mut before: Vec<ChainRecord> =
        in_log_order(history).into_iter().filter(|(p, _)| *p < first).map(|(_, r)| r).collect();
    let active = before.pop();
    (before.pop(), active)
}

/// Runs until the reader stops or `cancel`.
pub async fn dispatch(
    dispatcher: Dispatcher,
    mut log: mpsc::Receiver<LogEntry>,
    work: mpsc::Sender<Work>,
    cancel: CancellationToken,
) {
    let mut first = dispatcher.from_history;
    loop {
        let entry = tokio::select! {
            _ = cancel.cancelled() => return,
            e = log.recv() => match e { Some(e) => e, None => return },
        };
        let mut items = Vec::with_capacity(3);
        if std::mem::take(&mut first) {
            items.extend(dispatcher.startup_orders(&entry).await.into_iter().map(Work::Swap));
        }
        let (position, log_time) = (entry.position, entry.log_time);
        match entry.content {
            Content::Control(Control::SetChain { chain, reason }) => {
                items.push(Work::Swap(dispatcher.order(chain, reason, position, log_time)))
            }
            Content::Control(Control::Revert { from_version, chain, reason }) => {
                let order = dispatcher.order(chain, reason, position, log_time);
                items.push(Work::Swap(SwapOrder { only_from: Some(from_version), ..order }))
            }
            Content::Control(Control::StartShadow { chain, reason }) => {
                items.push(Work::StartShadow(dispatcher.order(chain, reason, position, log_time)))
            }
            Content::Control(Control::PromoteShadow { chain, reason }) => {
                let order = dispatcher.order(chain, reason, position, log_time);
                items.push(Work::Swap(SwapOrder { promote: true, ..order }))
            }
            Content::Control(Control::StopShadow { reason, started_at }) => {
                // An unreadable scope stops nothing rather than a shadow it may not mean.
                let scope = started_at
                    .map(|s| s.parse::<LogPosition>().unwrap_or(LogPosition { major: 0, minor: 0 }));
                items.push(Work::StopShadow { position, reason, started_at: scope })
            }
            Content::Control(Control::FaultStage { version, stage, plugin, reason }) => {
                items.push(Work::Fault(FaultOrder { position, log_time, version, stage, plugin, reason }))
            }
            _ => items.push(Work::Entry(entry)),
        }
        for item in items {
            tokio::select! {
                _ = cancel.cancelled() => return,
                sent = work.send(item) => if sent.is_err() { return },
            }
        }
    }
}
