//! The dedupe builtin by id keeps many ids inside a small memory cap, and can still
//! hand over its state: at 5,000 new ids a second of log time, two minutes of ids
//! (600,000) and their snapshot under a 16 MiB cap. A map of ids to their times takes
//! 25 bytes a slot, and twice that while it grows: in the soak (5,000 ids a second) it
//! ran out of the default 64 MiB at roughly a million ids. With generations, the same
//! stage holds and snapshots ten minutes of ids at this rate (3,000,000) in 64 MiB.

use super::*;

const DEDUPE: &str = "dedupe@0.1.0";

fn with_id(id: u64) -> Event {
    Event { key: "queue".into(), id, payload: Bytes::from_static(b"{}"), ..Default::default() }
}

#[test]
fn six_hundred_thousand_ids_fit_in_16_mib_and_still_snapshot() {
    let runtime =
        PolicyRuntime::new(&SandboxConfig { max_memory_bytes: 16 << 20, ..SandboxConfig::default() });
    let stage = [policy("builtin:dedupe", "by = \"id\"\nforget_after_ms = 600000")];
    let mut chain = build(&runtime, &stage, ChainOptions::defaults(&runtime)).unwrap();
    let m = Counts::new("t");
    let (per_second, seconds) = (5_000u64, 120u64);
    for second in 0..seconds {
        // Spread like hashes of idempotency strings.
        let batch =
            (0..per_second).map(|i| with_id((second * per_second + i).wrapping_mul(0x9E37_79B9_7F4A_7C15)));
        let out = chain.push(second as i64 * 1_000, batch.collect(), &m);
        assert_eq!(m.plugin_count(DEDUPE, "fault"), 0, "faulted at second {second}");
        assert_eq!(out.released.len() as u64, per_second, "second {second}: every new id released");
    }
    let repeats = (0..1_000u64).map(|i| with_id(i.wrapping_mul(0x9E37_79B9_7F4A_7C15))).collect();
    assert!(
        chain.push(seconds as i64 * 1_000, repeats, &m).released.is_empty(),
        "the first ids are remembered"
    );
    assert_eq!(m.plugin_count(DEDUPE, "duplicate"), 1_000);
    let state = chain.state().unwrap_or_else(|(stage, e)| panic!("stage {stage} could not snapshot: {e}"));
    let snapshot = state.stages[0].snapshot.as_ref().expect("a running stage");
    assert!(snapshot.len() < (per_second * seconds * 9) as usize, "8 bytes an id: {} bytes", snapshot.len());
}
