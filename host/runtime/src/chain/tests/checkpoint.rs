//! Checkpoints: a chain rebuilt from another's state decides the rest alike.

use super::*;

fn taxi() -> Vec<StageSpec> {
    vec![
        policy("builtin:ordering", "window_ms = 1000"),
        policy("builtin:staleness", "max_age_ms = 30000"),
        policy("builtin:dedupe", "newest_per_frame = true"),
    ]
}

fn ev(key: u64, t: i64) -> Event {
    Event {
        key: format!("k{key}"),
        event_time: t,
        payload: Bytes::from(format!("{{\"k\":{key},\"t\":{t}}}")),
        ..Default::default()
    }
}

/// Late, duplicate and backwards reports among 30 keys.
fn batch(round: i64) -> Vec<Event> {
    (0..50u64)
        .map(|i| ev(i % 30, round * 400 - ((round as u64 * 7919 + i * 104_729) % 2_000) as i64))
        .collect()
}

fn out(o: ChainOutput) -> Vec<(String, i64)> {
    o.released.into_iter().map(|e| (e.key, e.event_time)).collect()
}

fn rebuilt(runtime: &PolicyRuntime, state: &ChainState, options: ChainOptions) -> Chain {
    let prepared = PreparedChain::load(runtime, &state.spec, options.limits).unwrap();
    let previous = state.previous.as_ref().map(|p| PreparedChain::load(runtime, p, options.limits).unwrap());
    Chain::restore(prepared, previous, state.clone(), options).unwrap()
}

#[test]
fn a_chain_rebuilt_from_a_state_goes_on_exactly_like_the_original() {
    let runtime = PolicyRuntime::new(&SandboxConfig::default());
    let options = ChainOptions::defaults(&runtime);
    let mut original = build(&runtime, &taxi(), options).unwrap();
    let m = Counts::new("t");
    for round in 1..=20 {
        original.push(round * 400, batch(round), &m);
    }
    let state = original.state().unwrap();
    assert!(!state.held.is_empty(), "the ordering window holds events at the checkpoint");
    assert!(state.stages.iter().all(|s| s.snapshot.is_some()));
    let mut copy = rebuilt(&runtime, &state, options);
    assert_eq!(copy.state().unwrap(), state, "the copy's state is the original's");
    let mut released = 0;
    for round in 21..=60 {
        let expected = out(original.push(round * 400, batch(round), &m));
        released += expected.len();
        assert_eq!(out(copy.push(round * 400, batch(round), &m)), expected, "round {round}");
    }
    assert!(released > 100, "the rounds released events ({released})");
}

#[test]
fn a_state_taken_right_after_a_swap_keeps_what_waits_to_reenter_and_the_last_good_chain() {
    let runtime = PolicyRuntime::new(&SandboxConfig::default());
    let options = ChainOptions::defaults(&runtime);
    let mut original = build(&runtime, &taxi(), options).unwrap();
    let m = Counts::new("t");
    for round in 1..=10 {
        original.push(round * 400, batch(round), &m);
    }
    // Without the ordering stage: what it held waits to re-enter.
    let mut next = PreparedChain::load(&runtime, &chain_of(taxi()[1..].to_vec()), options.limits).unwrap();
    next.spec.version = 1;
    assert!(original.swap(next).reinjected > 0);
    let state = original.state().unwrap();
    assert!(!state.reinject.is_empty());
    assert_eq!(state.previous.as_ref().map(|p| p.policies.len()), Some(3));
    let mut copy = rebuilt(&runtime, &state, options);
    assert_eq!(copy.previous_spec(), original.previous_spec());
    for round in 11..=30 {
        let expected = out(original.push(round * 400, batch(round), &m));
        assert_eq!(out(copy.push(round * 400, batch(round), &m)), expected, "round {round}");
    }
}

#[test]
fn a_state_is_refused_by_other_stages_or_a_damaged_snapshot() {
    let runtime = PolicyRuntime::new(&SandboxConfig::default());
    let options = ChainOptions::defaults(&runtime);
    let mut original = build(&runtime, &taxi(), options).unwrap();
    original.push(400, batch(1), &m_counts());
    let state = original.state().unwrap();
    let other = PreparedChain::load(&runtime, &chain_of(taxi()[1..].to_vec()), options.limits).unwrap();
    let e = Chain::restore(other, None, state.clone(), options).err().expect("another chain");
    assert!(matches!(e, RestoreError::OtherChain { .. }), "{e}");
    let mut damaged = state.clone();
    damaged.stages[0].snapshot = Some(vec![0xff; 7]);
    let prepared = PreparedChain::load(&runtime, &state.spec, options.limits).unwrap();
    let e = Chain::restore(prepared, None, damaged, options).err().expect("a damaged snapshot");
    assert!(matches!(e, RestoreError::Refused { index: 0, .. }), "{e}");
    let mut other_component = state.clone();
    other_component.stages[2].plugin_digest = "sha256:00".into();
    let prepared = PreparedChain::load(&runtime, &state.spec, options.limits).unwrap();
    let e = Chain::restore(prepared, None, other_component, options).err().expect("another component");
    assert!(matches!(e, RestoreError::OtherComponent { index: 2, .. }), "{e}");
}

fn m_counts() -> Counts {
    Counts::new("t")
}
