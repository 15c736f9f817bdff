//! In-process bus for the embedded demo and unit tests: a bounded ring per tenant.
//!
//! Positions and log times mimic Redis stream ids (ms, then a counter within the ms),
//! monotonic even if the wall clock steps back.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::readiness::Readiness;

use super::{EntryBody, LogEntry, LogPosition, wall_clock_ms};

const RETAINED_ENTRIES: usize = 65_536;

#[derive(Clone, Default)]
pub struct MemoryBus {
    logs: Arc<Mutex<BTreeMap<String, Arc<TenantLog>>>>,
}

struct TenantLog {
    state: Mutex<LogState>,
    /// Total entries ever appended: readers wait for it to pass their cursor.
    appended: watch::Sender<u64>,
}

#[derive(Default)]
struct LogState {
    entries: VecDeque<LogEntry>,
    /// Index (in appended order) of `entries[0]`.
    first_index: u64,
    last: LogPosition,
}

impl MemoryBus {
    fn log(&self, tenant: &str) -> Arc<TenantLog> {
        let mut logs = self.logs.lock().unwrap();
        logs.entry(tenant.to_string())
            .or_insert_with(|| Arc::new(TenantLog { state: Mutex::default(), appended: watch::channel(0).0 }))
            .clone()
    }

    pub fn publish(&self, tenant: &str, body: &EntryBody) -> LogPosition {
        let log = self.log(tenant);
        let mut st = log.state.lock().unwrap();
        let now = wall_clock_ms().max(0) as u64;
        let position = if now > st.last.major {
            LogPosition { major: now, minor: 0 }
        } else {
            LogPosition { major: st.last.major, minor: st.last.minor + 1 }
        };
        st.last = position;
        st.entries.push_back(LogEntry::decode(position, position.major as i64, body));
        if st.entries.len() > RETAINED_ENTRIES {
            st.entries.pop_front();
            st.first_index += 1;
        }
        let total = st.first_index + st.entries.len() as u64;
        drop(st);
        log.appended.send_replace(total);
        position
    }

    pub async fn read(
        &self,
        tenant: &str,
        out: mpsc::Sender<LogEntry>,
        ready: Arc<Readiness>,
        cancel: CancellationToken,
    ) {
        let log = self.log(tenant);
        let mut appended = log.appended.subscribe();
        let mut cursor = 0u64;
        ready.log_up();
        loop {
            let batch: Vec<LogEntry> = {
                let st = log.state.lock().unwrap();
                if cursor < st.first_index {
                    tracing::warn!(
                        tenant,
                        skipped = st.first_index - cursor,
                        "memory bus reader fell behind the ring"
                    );
                    cursor = st.first_index;
                }
                let from = (cursor - st.first_index) as usize;
                st.entries.iter().skip(from).cloned().collect()
            };
            cursor += batch.len() as u64;
            for entry in batch {
                if !super::deliver(&out, entry, &cancel).await {
                    return;
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                changed = appended.wait_for(|&total| total > cursor) => if changed.is_err() { return },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::Content;
    use crate::event::Event;

    #[tokio::test]
    async fn readers_see_every_entry_in_order_with_increasing_positions() {
        let bus = MemoryBus::default();
        bus.publish("t", &EntryBody::Heartbeat);
        let (tx, mut rx) = mpsc::channel(4);
        let cancel = CancellationToken::new();
        let reader = tokio::spawn({
            let bus = bus.clone();
            let cancel = cancel.clone();
            async move { bus.read("t", tx, Arc::new(Readiness::without_source()), cancel).await }
        });
        for i in 0..10u8 {
            bus.publish("t", &EntryBody::batch(&[Event { event_time: i.into(), ..Event::default() }]));
        }
        let mut last = LogPosition::default();
        let first = rx.recv().await.unwrap();
        assert_eq!(first.content, Content::Heartbeat);
        last = last.max(first.position);
        for i in 0..10u8 {
            let e = rx.recv().await.unwrap();
            assert_eq!(e.content, Content::Events(vec![Event { event_time: i.into(), ..Event::default() }]));
            assert!(e.position > last);
            last = e.position;
        }
        cancel.cancel();
        reader.await.unwrap();
    }
}
