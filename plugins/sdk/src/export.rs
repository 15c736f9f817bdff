//! [`export_policy!`]: a [`Policy`](crate::Policy) as a component of `streamgate:policy@0.1.0`;
//! and the shell every world's export macro shares (`__policy_shell!`).

/// Exports a [`Policy`](crate::Policy) implementation as the component's `streamgate:policy/policy@0.1.0`
/// (world `policy-plugin`); `$wit_path` is the `wit/` directory holding `policy.wit`.
/// [`Policy::capabilities`](crate::Policy::capabilities) and [`Decisions::expire`](crate::Decisions::expire) are not part of
/// this world: use [`export_policy_v2!`] for them.
///
/// Call it once at the crate root of a `cdylib` plugin; the plugin crate must depend on
/// `wit-bindgen` for `wasm32` targets. On other targets it expands to nothing, so the
/// same crate doubles as a native library for tests and benchmarks.
#[macro_export]
macro_rules! export_policy {
    ($policy:ty, $wit_path:literal) => {
        #[cfg(target_arch = "wasm32")]
        mod __streamgate_export {
            wit_bindgen::generate!({ path: $wit_path, world: "streamgate:policy/policy-plugin@0.1.0" });

            use exports::streamgate::policy::policy as wit;

            $crate::__events_of_records!();

            $crate::__policy_shell!($policy, {
                fn push(&self, now: i64, events: Vec<wit::Event>) -> wit::Decisions {
                    let events = events_of(events);
                    let mut out = $crate::Decisions::default();
                    self.0.borrow_mut().push(now, &events, &mut out);
                    wit::Decisions {
                        released: out.released,
                        dropped: out
                            .dropped
                            .into_iter()
                            .map(|(seq, reason)| wit::Dropped { seq, reason: drop_reason(reason) })
                            .collect(),
                    }
                }
            });
        }
    };
}

/// What every world's export shares (an internal detail of the export macros), written
/// against whichever world's `wit` module is in scope where it expands: the component
/// and its `describe`, the stage resource's `create`, `snapshot` and `restore`, the
/// SDK → WIT conversions, the `export!`. `$stage_items` are the world's own stage
/// methods (`push`, and `capabilities` from 0.2.0 on).
#[doc(hidden)]
#[macro_export]
macro_rules! __policy_shell {
    ($policy:ty, { $($stage_items:tt)* }) => {
        use $crate::Policy as _;

        struct Component;

        struct StageCell(::core::cell::RefCell<$policy>);

        impl wit::Guest for Component {
            type Stage = StageCell;

            fn describe() -> wit::Description {
                let d = <$policy>::describe();
                wit::Description {
                    name: d.name,
                    version: d.version,
                    capabilities: d.capabilities.into_iter().map(capability).collect(),
                    state_version: d.state_version,
                }
            }
        }

        impl wit::GuestStage for StageCell {
            fn create(config: String) -> Result<wit::Stage, wit::ConfigError> {
                match <$policy>::create(&config) {
                    Ok(p) => Ok(wit::Stage::new(StageCell(::core::cell::RefCell::new(p)))),
                    Err($crate::ConfigError::Malformed(m)) => Err(wit::ConfigError::Malformed(m)),
                    Err($crate::ConfigError::Invalid(m)) => Err(wit::ConfigError::Invalid(m)),
                }
            }

            fn snapshot(&self) -> Vec<u8> {
                self.0.borrow().snapshot()
            }

            fn restore(&self, state_version: u32, state: Vec<u8>) -> Result<(), wit::RestoreError> {
                self.0.borrow_mut().restore(state_version, &state).map_err(|e| match e {
                    $crate::RestoreError::UnsupportedVersion(v) => wit::RestoreError::UnsupportedVersion(v),
                    $crate::RestoreError::Corrupt(m) => wit::RestoreError::Corrupt(m),
                })
            }

            $($stage_items)*
        }

        fn capability(c: $crate::Capability) -> wit::Capability {
            match c {
                $crate::Capability::Ordering => wit::Capability::Ordering,
                $crate::Capability::Staleness => wit::Capability::Staleness,
                $crate::Capability::Dedupe => wit::Capability::Dedupe,
                $crate::Capability::Filter => wit::Capability::Filter,
                $crate::Capability::Coalesce => wit::Capability::Coalesce,
            }
        }

        // 0.3.0 and 0.4.0 send reason codes instead ([`crate::DropReason::code`]).
        #[allow(dead_code)]
        fn drop_reason(r: $crate::DropReason) -> wit::DropReason {
            match r {
                $crate::DropReason::Stale => wit::DropReason::Stale,
                $crate::DropReason::Duplicate => wit::DropReason::Duplicate,
                $crate::DropReason::OutOfDate => wit::DropReason::OutOfDate,
                $crate::DropReason::Superseded => wit::DropReason::Superseded,
                $crate::DropReason::Filtered => wit::DropReason::Filtered,
                $crate::DropReason::Overflow => wit::DropReason::Overflow,
            }
        }

        export!(Component);
    };
}

/// The SDK's events from a batch of `event` records, for the worlds that send records
/// (0.1.0, 0.2.0; an internal detail of their export macros). 0.3.0 sends columns
/// ([`crate::events_of_columns`]), 0.4.0 rows ([`crate::events_of_rows`]).
#[doc(hidden)]
#[macro_export]
macro_rules! __events_of_records {
    () => {
        fn events_of(records: Vec<wit::Event>) -> Vec<$crate::Event> {
            records
                .into_iter()
                .map(|e| $crate::Event {
                    seq: e.seq,
                    key: e.key,
                    event_time: e.event_time,
                    log_time: e.log_time,
                    id: e.id,
                    tag: e.tag,
                })
                .collect()
        }
    };
}
