//! Control entries: changes to a tenant's chain carried in its log as JSON, so every
//! instance applies them at the same position. Most come from the admin API; two come
//! from an instance that saw something the others could not (its own wall clock, its
//! own connection to the plugin store): it publishes what it decided, and every
//! instance, itself included, follows at the entry's position.

use serde::{Deserialize, Serialize};
use streamgate_runtime::ChainSpec;

/// A change to a tenant's chain, carried as a log entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Control {
    /// From this log position on, run `chain` (state moves over from the old stages).
    SetChain { chain: ChainSpec, reason: String },
    /// Stage `stage` (`plugin`) of chain `version` faults here: one instance measured a
    /// call of it past the tenant's call timeout. Ignored by a chain of another version.
    FaultStage { version: u64, stage: usize, plugin: String, reason: String },
    /// If the running chain is `from_version`, go back to `chain`: one instance could
    /// not prepare `from_version` (its plugin store was out of reach), kept `chain`,
    /// and every instance follows it.
    Revert { from_version: u64, chain: ChainSpec, reason: String },
    /// From this log position on, run `chain` beside the live chain as a shadow: it
    /// starts from the live chain's state here, sees every later entry, and its output
    /// only feeds the diff (never subscribers). Replaces any running shadow.
    StartShadow { chain: ChainSpec, reason: String },
    /// The shadow running `chain` becomes the live chain here, as version
    /// `chain.version`, with its own state; where no intact shadow runs, a plain swap to
    /// `chain`.
    PromoteShadow { chain: ChainSpec, reason: String },
    /// The shadow stops here: any shadow, or (`started_at` set) only the one started at
    /// that position. An instance whose candidate stopped for a reason only it saw (it
    /// fell behind, a call past its wall-clock timeout) publishes one with `started_at`,
    /// so every instance drops that candidate at the same position.
    StopShadow {
        reason: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        started_at: Option<String>,
    },
}

impl Control {
    pub fn encode(&self) -> bytes::Bytes {
        serde_json::to_vec(self).expect("control messages serialise").into()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stop_of(reason: &str) -> Control {
        Control::StopShadow { reason: reason.into(), started_at: None }
    }
    use streamgate_runtime::StageSpec;

    #[test]
    fn control_messages_round_trip_and_reject_unknown_fields() {
        let c = Control::SetChain {
            chain: ChainSpec { version: 3, policies: vec![StageSpec::new("sha256:ab", r#"{"by":"id"}"#)] },
            reason: "set".into(),
        };
        let bytes = c.encode();
        assert_eq!(Control::decode(&bytes).unwrap(), c);
        assert!(std::str::from_utf8(&bytes).unwrap().contains(r#""op":"set-chain""#));
        assert!(Control::decode(br#"{"op":"explode"}"#).is_err());
        let fault = Control::FaultStage { version: 3, stage: 1, plugin: "p@1".into(), reason: "slow".into() };
        assert_eq!(Control::decode(&fault.encode()).unwrap(), fault);
        let revert = Control::Revert { from_version: 4, chain: ChainSpec::default(), reason: "store".into() };
        assert!(std::str::from_utf8(&revert.encode()).unwrap().contains(r#""op":"revert""#));
        assert_eq!(Control::decode(&revert.encode()).unwrap(), revert);
        let shadow = Control::StartShadow { chain: ChainSpec::default(), reason: "try".into() };
        assert!(std::str::from_utf8(&shadow.encode()).unwrap().contains(r#""op":"start-shadow""#));
        assert_eq!(Control::decode(&shadow.encode()).unwrap(), shadow);
        let promote = Control::PromoteShadow { chain: ChainSpec::default(), reason: "ok".into() };
        assert_eq!(Control::decode(&promote.encode()).unwrap(), promote);
        let stop = Control::StopShadow { reason: "done".into(), started_at: None };
        assert!(std::str::from_utf8(&stop.encode()).unwrap().contains(r#""op":"stop-shadow""#));
        assert!(!std::str::from_utf8(&stop.encode()).unwrap().contains("started_at"));
        let scoped = Control::StopShadow { reason: "behind".into(), started_at: Some("5-0".into()) };
        assert_eq!(Control::decode(&scoped.encode()).unwrap(), scoped);
        assert_eq!(Control::decode(br#"{"op":"stop-shadow","reason":"r"}"#).unwrap(), stop_of("r"));
    }
}
