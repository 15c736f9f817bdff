//! Publishes what this instance decided on its own (a plugin call past the tenant's
//! timeout by its wall clock, a chain it could not prepare) into the tenant's log as a
//! control entry: every instance, this one included, then acts on it at that entry.
//! Also keeps in the chain history the chain changes every instance made alike at one
//! entry without a history record of their own ([`record_history`]).

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::bus::{Bus, Control, EntryBody};
use crate::metrics::TenantMetrics;
use crate::policy::{ChainRecord, Store};

/// Tries per report while the bus is out of reach.
const ATTEMPTS: u32 = 6;

/// The name reports give this instance: host and process.
pub fn instance_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host = host.trim();
    format!("{}:{}", if host.is_empty() { "localhost" } else { host }, std::process::id())
}

/// Runs until the worker drops its sender or `cancel`.
pub async fn publish_reports(
    bus: Bus,
    metrics: Arc<TenantMetrics>,
    mut reports: mpsc::UnboundedReceiver<Control>,
    cancel: CancellationToken,
) {
    let tenant = metrics.tenant.clone();
    loop {
        let control = tokio::select! {
            _ = cancel.cancelled() => return,
            r = reports.recv() => match r { Some(c) => c, None => return },
        };
        let body = EntryBody::control(&control);
        let published = with_retries(&tenant, "publish a fault report", || bus.publish(&tenant, &body)).await;
        match published {
            Some(position) => {
                metrics.reports.fetch_add(1, Relaxed);
                tracing::warn!(tenant, %position, ?control, "published a fault only this instance saw");
            }
            None => tracing::error!(
                tenant,
                ?control,
                "cannot publish a fault report; the other instances will not follow it"
            ),
        }
    }
}

/// Runs `attempt` up to [`ATTEMPTS`] times, backing off between failures (each logged
/// as `what` failing); `None` when every one failed.
async fn with_retries<T, E: std::fmt::Display, F: std::future::Future<Output = Result<T, E>>>(
    tenant: &str,
    what: &str,
    mut attempt: impl FnMut() -> F,
) -> Option<T> {
    for n in 1..=ATTEMPTS {
        match attempt().await {
            Ok(value) => return Some(value),
            Err(e) if n < ATTEMPTS => {
                tracing::warn!(tenant, error = %e, "cannot {what} yet; retrying");
                tokio::time::sleep(Duration::from_millis(50 << n)).await;
            }
            Err(e) => tracing::error!(tenant, error = %e, "cannot {what}; giving up after {ATTEMPTS} tries"),
        }
    }
    None
}

/// Keeps each chain change the log does not record itself (a `last-good` revert, an
/// applied `revert`) in the tenant's chain history, once however many instances record it. Runs until the worker drops its sender or `cancel`.
pub async fn record_history(
    store: Store,
    tenant: String,
    mut records: mpsc::UnboundedReceiver<ChainRecord>,
    cancel: CancellationToken,
) {
    loop {
        let record = tokio::select! {
            _ = cancel.cancelled() => return,
            r = records.recv() => match r { Some(r) => r, None => return },
        };
        let recorded =
            with_retries(&tenant, "record a chain change", || store.record_chain_once(&tenant, &record));
        if recorded.await.is_none() {
            tracing::error!(
                tenant,
                position = record.position,
                "a chain change is not in the history; an instance that starts later may run another chain"
            );
        }
    }
}
