//! Publishes what this instance decided on its own (a plugin call past the tenant's
//! timeout by its wall clock, a chain it could not prepare) into the tenant's log as a
//! control entry: every instance, this one included, then acts on it at that entry.
//! Also keeps in the chain history the chains `last-good` went back to
//! ([`record_history`]), which every instance decided alike at one entry.

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
        for attempt in 1..=ATTEMPTS {
            match bus.publish(&tenant, &body).await {
                Ok(position) => {
                    metrics.reports.fetch_add(1, Relaxed);
                    tracing::warn!(tenant, %position, ?control, "published a fault only this instance saw");
                    break;
                }
                Err(e) if attempt < ATTEMPTS => {
                    tracing::warn!(tenant, error = %e, "cannot publish a fault report yet; retrying");
                    tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
                }
                Err(e) => tracing::error!(tenant, error = %e, ?control,
                    "cannot publish a fault report; the other instances will not follow it"),
            }
        }
    }
}

/// Keeps each chain `last-good` went back to in the tenant's chain history, once however
/// many instances record it. Runs until the worker drops its sender or `cancel`.
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
        for attempt in 1..=ATTEMPTS {
            match store.record_chain_once(&tenant, &record).await {
                Ok(()) => break,
                Err(e) if attempt < ATTEMPTS => {
                    tracing::warn!(tenant, error = %e, "cannot record a last-good chain yet; retrying");
                    tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
                }
                Err(e) => tracing::error!(tenant, error = %e, position = record.position,
                    "cannot record a last-good chain; an instance that starts later may run another chain"),
            }
        }
    }
}
