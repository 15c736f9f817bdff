//! Control entries: changes to a tenant's chain carried in its log as JSON, so every
//! instance applies them at the same position.

use serde::{Deserialize, Serialize};
use streamgate_runtime::ChainSpec;

/// A change to a tenant's chain, carried as a log entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Control {
    /// From this log position on, run `chain` (state moves over from the old stages).
    SetChain { chain: ChainSpec, reason: String },
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
    }
}
