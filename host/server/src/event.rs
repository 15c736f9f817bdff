//! The event every stage of the path carries ([`Event`], from the policy runtime) and
//! why a source message is not one ([`DecodeError`]): the vocabulary source, bus,
//! chain, hub and metrics share.

pub use streamgate_runtime::{Event, key_hash};

/// Why a source message was dropped instead of published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("payload larger than max_payload_bytes")]
    TooLarge,
    #[error("payload is not a JSON object")]
    NotJson,
    #[error("key missing or not a string/number")]
    BadKey,
    #[error("time missing or not an integer number of ms")]
    BadTime,
    #[error("id or tag missing or not a string/number")]
    BadId,
    #[error("time further ahead of this instance's clock than max_future_skew_ms (not ms since epoch?)")]
    FutureTime,
}

impl DecodeError {
    pub const ALL: [DecodeError; 6] = [
        DecodeError::TooLarge,
        DecodeError::NotJson,
        DecodeError::BadKey,
        DecodeError::BadTime,
        DecodeError::BadId,
        DecodeError::FutureTime,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DecodeError::TooLarge => "too_large",
            DecodeError::NotJson => "not_json",
            DecodeError::BadKey => "bad_key",
            DecodeError::BadTime => "bad_time",
            DecodeError::BadId => "bad_id",
            DecodeError::FutureTime => "future_time",
        }
    }
}
