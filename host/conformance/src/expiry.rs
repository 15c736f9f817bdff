//! What a staleness stage may expire: a key it released an event of, once its newest
//! released event time fell more than `max_age_ms` behind the push's `now`, and once
//! per silence (a release of the key starts a new one). Expiring is optional (a stage
//! on the 0.1.0 world cannot), but an expiry removes the key's latest value from every
//! map, so one that breaks this rule (every key at every push, a key still reporting, a
//! key never seen) is a plugin that makes live keys vanish.

use std::collections::BTreeMap;

use crate::harness::Answer;

/// Checks every expiry of a run against the rule above.
pub fn silent_keys_only(frames: &[Answer], max_age_ms: i64) -> Result<(), String> {
    // Per key: the newest event time released, and whether it was expired since.
    let mut keys: BTreeMap<u64, (i64, bool)> = BTreeMap::new();
    for (i, f) in frames.iter().enumerate() {
        for e in &f.released {
            let entry = keys.entry(e.key).or_insert((e.event_time, false));
            *entry = (entry.0.max(e.event_time), false);
        }
        let oldest_allowed = f.now.saturating_sub(max_age_ms);
        for &key in &f.expired {
            let why = match keys.get_mut(&key) {
                None => "no event of it was ever released".to_string(),
                Some((_, true)) => "it was expired already, and nothing of it released since".to_string(),
                Some((newest, _)) if *newest >= oldest_allowed => format!(
                    "its newest released event time {newest} is {} ms old, not older than max_age_ms = {max_age_ms}",
                    f.now.saturating_sub(*newest)
                ),
                Some(silent) => {
                    silent.1 = true;
                    continue;
                }
            };
            return Err(format!(
                "push {} (now={}) expired key #{key:016x}, but {why}: a key may be expired only once its newest \
                 release is older than max_age_ms, once per silence",
                i + 1,
                f.now
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use streamgate_plugin_sdk::Event;

    use super::*;

    fn frame(now: i64, released: &[(u64, i64)], expired: &[u64]) -> Answer {
        let released = released
            .iter()
            .map(|&(key, event_time)| Event { seq: 0, key, event_time, log_time: 0, id: 0, tag: 0 })
            .collect();
        Answer { now, released, dropped: vec![], expired: expired.to_vec() }
    }

    #[test]
    fn only_keys_silent_past_max_age_expire_once() {
        let honest = [frame(1_000, &[(7, 1_000)], &[]), frame(2_001, &[], &[7]), frame(5_000, &[], &[])];
        assert!(silent_keys_only(&honest, 1_000).is_ok());
        let at_the_bound = [frame(1_000, &[(7, 1_000)], &[]), frame(2_000, &[], &[7])];
        assert!(silent_keys_only(&at_the_bound, 1_000).unwrap_err().contains("not older than max_age_ms"));
        let every_push = [frame(1_000, &[(7, 1_000)], &[7])];
        assert!(silent_keys_only(&every_push, 1_000).unwrap_err().contains("0 ms old"));
        let never_seen = [frame(1_000, &[], &[9])];
        assert!(
            silent_keys_only(&never_seen, 1_000).unwrap_err().contains("no event of it was ever released")
        );
        let twice = [frame(1_000, &[(7, 1_000)], &[]), frame(2_001, &[], &[7]), frame(3_000, &[], &[7])];
        assert!(silent_keys_only(&twice, 1_000).unwrap_err().contains("expired already"));
        let back =
            [frame(1_000, &[(7, 1_000)], &[]), frame(2_001, &[], &[7]), frame(2_100, &[(7, 2_100)], &[])];
        let mut again = back.to_vec();
        again.push(frame(3_101, &[], &[7]));
        assert!(silent_keys_only(&again, 1_000).is_ok(), "a key that came back expires again");
    }
}
