//! [`export_policy_v3!`]: a [`Policy`](crate::Policy) as a component of
//! `streamgate:policy@0.3.0`, 0.2.0's shell with the batch read from six columns of
//! numbers and the drops written as two lists: the cheapest crossing for a policy
//! whose own work per event is small.

/// Exports a [`Policy`](crate::Policy) implementation as the component's
/// `streamgate:policy/policy@0.3.0` (world `policy-plugin`); `$wit_path` is the directory
/// holding the 0.3.0 `policy.wit` (`wit/v0.3.0` in this repository). The policy sees the
/// same [`Event`](crate::Event)s and fills the same [`Decisions`](crate::Decisions) as
/// under the other worlds; only the shell differs.
///
/// Call it once at the crate root of a `cdylib` plugin, instead of [`export_policy!`] or
/// [`export_policy_v2!`]; the crate must depend on `wit-bindgen` for `wasm32` targets.
/// On other targets it expands to nothing.
#[macro_export]
macro_rules! export_policy_v3 {
    ($policy:ty, $wit_path:literal) => {
        #[cfg(target_arch = "wasm32")]
        mod __streamgate_export_v3 {
            wit_bindgen::generate!({ path: $wit_path, world: "streamgate:policy/policy-plugin@0.3.0" });

            use exports::streamgate::policy::policy as wit;

            $crate::__policy_shell!($policy, {
                fn capabilities(&self) -> Vec<wit::Capability> {
                    self.0.borrow().capabilities().into_iter().map(capability).collect()
                }

                fn push(
                    &self,
                    now: i64,
                    seqs: Vec<u64>,
                    keys: Vec<u64>,
                    event_times: Vec<i64>,
                    log_times: Vec<i64>,
                    ids: Vec<u64>,
                    tags: Vec<u64>,
                ) -> wit::Decisions {
                    let events = $crate::events_of_columns(&seqs, &keys, &event_times, &log_times, &ids, &tags);
                    let mut out = $crate::Decisions::default();
                    self.0.borrow_mut().push(now, &events, &mut out);
                    let (dropped, dropped_reasons) = out.dropped.iter().map(|&(seq, r)| (seq, r.code())).unzip();
                    wit::Decisions { released: out.released, dropped, dropped_reasons, expired: out.expired }
                }
            });
        }
    };
}

/// Events from 0.3.0's columns (an internal detail of [`export_policy_v3!`]): the
/// shortest column bounds the batch (the host sends six of one length).
#[doc(hidden)]
pub fn events_of_columns(
    seqs: &[u64],
    keys: &[u64],
    event_times: &[i64],
    log_times: &[i64],
    ids: &[u64],
    tags: &[u64],
) -> Vec<crate::Event> {
    let (seqs_keys, times) = (seqs.iter().zip(keys), event_times.iter().zip(log_times));
    seqs_keys
        .zip(times)
        .zip(ids.iter().zip(tags))
        .map(|(((&seq, &key), (&event_time, &log_time)), (&id, &tag))| crate::Event {
            seq,
            key,
            event_time,
            log_time,
            id,
            tag,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::{DropReason, Event};

    #[test]
    fn columns_become_events_and_reasons_keep_the_wit_order() {
        let events = super::events_of_columns(&[1, 2], &[7, 8], &[10, 20], &[5, 5], &[0, 3], &[4, 0]);
        assert_eq!(events[1], Event { seq: 2, key: 8, event_time: 20, log_time: 5, id: 3, tag: 0 });
        assert_eq!(events.len(), 2);
        let codes: Vec<u8> = DropReason::ALL.iter().map(|r| r.code()).collect();
        assert_eq!(codes, vec![0, 1, 2, 3, 4, 5], "stale ... overflow, as in the WIT enum");
    }
}
