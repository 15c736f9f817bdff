//! Answers in a shape their world does not allow (the `malformed` fixture, 0.4.0,
//! written without the SDK): each is a fault of that stage, named, and the failure
//! policy takes what it held, as for any other fault.

use super::*;
use crate::{Fault, StageError};

const SHAPES: [(&str, &str); 4] = [
    ("short", "3 words, but its counts (1 released, 0 dropped, 0 expired)"),
    ("long", "6 words, but its counts (2 released"),
    ("bad-code", "drop reason code 9 for sequence number 4"),
    ("no-counts", "0 words, fewer than the three counts"),
];

fn ev(key: &str) -> Event {
    Event { key: key.into(), payload: Bytes::from_static(b"{}"), ..Default::default() }
}

#[test]
fn a_malformed_answer_is_a_fault_that_says_what_was_wrong() {
    let runtime = PolicyRuntime::new(&SandboxConfig::default());
    let plugin = runtime.load_ref(&fixture("fixture_malformed")).unwrap();
    let row = |seq| wit::Event { seq, key: 1, event_time: 0, log_time: 0, id: 0, tag: 0 };
    let mut healthy = plugin.stage("", runtime.limits(None)).unwrap();
    assert_eq!(healthy.push(0, &[row(4), row(5)]).unwrap().released, vec![4, 5]);
    for (shape, says) in SHAPES {
        let mut stage = plugin.stage(&format!("\"{shape}\""), runtime.limits(None)).unwrap();
        let batch: &[wit::Event] = if shape == "short" { &[] } else { &[row(4), row(5)] };
        match stage.push(0, batch) {
            Err(StageError::Fault(fault @ Fault::Malformed(_))) => {
                let message = fault.to_string();
                assert!(message.starts_with("answered in a malformed shape: "), "{shape}: {message}");
                assert!(message.contains(says), "{shape}: {message}");
            }
            other => panic!("{shape}: a malformed answer must be a fault, got {other:?}"),
        }
    }
}

#[test]
fn a_chain_quarantines_the_stage_and_its_failure_policy_takes_the_batch() {
    let runtime = PolicyRuntime::new(&SandboxConfig::default());
    for (shape, _) in SHAPES {
        for (failure, passed) in [(FailurePolicy::FailOpen, 2), (FailurePolicy::FailClosed, 0)] {
            let stages = [StageSpec::new(&fixture("fixture_malformed"), &format!("\"{shape}\""))];
            let options = ChainOptions { failure_policy: failure, ..ChainOptions::defaults(&runtime) };
            let mut chain = build(&runtime, &stages, options).unwrap();
            let m = Counts::new("t");
            let out = chain.push(1_000, vec![ev("a"), ev("b")], &m);
            assert_eq!(out.released.len(), passed, "{shape}, {failure:?}");
            assert!(chain.quarantined(0), "{shape}, {failure:?}: quarantined");
            assert_eq!(m.plugin_count("malformed@0.1.0", "fault"), 1, "{shape}, {failure:?}: one fault");
            assert_eq!(chain.held(), 0, "{shape}, {failure:?}: nothing left in the chain");
        }
    }
}
