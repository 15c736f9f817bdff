//! [`export_policy_v2!`]: a [`Policy`](crate::Policy) as a component of
//! `streamgate:policy@0.2.0`: [`export_policy!`]'s shell plus the stage's
//! `capabilities` and the decisions' `expired` keys.

/// Exports a [`Policy`](crate::Policy) implementation as the component's `streamgate:policy/policy@0.2.0`
/// (world `policy-plugin`); `$wit_path` is the directory holding the 0.2.0 `policy.wit`
/// (`wit/v0.2.0` in this repository). Each stage answers `capabilities` with
/// [`Policy::capabilities`](crate::Policy::capabilities) (its claims under its config) and each `push` carries
/// [`Decisions::expire`](crate::Decisions::expire)'s keys.
///
/// Call it once at the crate root of a `cdylib` plugin, instead of [`export_policy!`];
/// the crate must depend on `wit-bindgen` for `wasm32` targets. On other targets it
/// expands to nothing.
#[macro_export]
macro_rules! export_policy_v2 {
    ($policy:ty, $wit_path:literal) => {
        #[cfg(target_arch = "wasm32")]
        mod __streamgate_export_v2 {
            wit_bindgen::generate!({ path: $wit_path, world: "streamgate:policy/policy-plugin@0.2.0" });

            use exports::streamgate::policy::policy as wit;

            $crate::__events_of_records!();

            $crate::__policy_shell!($policy, {
                fn capabilities(&self) -> Vec<wit::Capability> {
                    self.0.borrow().capabilities().into_iter().map(capability).collect()
                }

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
                        expired: out.expired,
                    }
                }
            });
        }
    };
}
