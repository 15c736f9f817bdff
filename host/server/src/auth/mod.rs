//! Optional per-tenant authorization of SSE subscribers with JWT (HS256 with a shared
//! secret, or RS256/ES256 with a public key).
//!
//! Claims: `tenant` (must be this tenant), `keys` (the keys the holder may read; `"*"`
//! for all), `exp` (required) and optionally `nbf`, both with the tenant's clock-skew
//! leeway. Only the tenant's algorithm is accepted, and tokens over [`MAX_TOKEN_BYTES`]
//! are refused unparsed. A missing, malformed, badly signed, expired or not yet valid
//! token is 401; a
//! token for another tenant, one that grants no key (`keys` empty or missing), or a
//! request for a key not granted, is 403. A grant is `*` or a non-empty set of keys,
//! never "nothing, so everything": a token granting some keys that asks for all of them
//! gets exactly its keys.

use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};

use crate::secrets::{Rotating, lines};

const USAGE: &str = "auth needs one of hs256_secret, public_key_pem with algorithm = \"RS256\" or \"ES256\", \
     or key_file (with algorithm, default HS256)";

/// `[tenant.auth]`: exactly one of `hs256_secret`, `public_key_pem` (+ `algorithm`) or
/// `key_file` (+ `algorithm`, default HS256).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Shared secret for HS256 tokens (env-expand it in your deployment, never commit it).
    pub hs256_secret: Option<String>,
    /// PEM public key for RS256 or ES256 tokens.
    pub public_key_pem: Option<String>,
    /// `RS256` or `ES256`, with `public_key_pem` (or with `key_file`).
    pub algorithm: Option<String>,
    /// A file of keys, re-read when it changes: HS256 secrets one per line, or PEM
    /// public keys one after another. A token signed by any of them is accepted, so a
    /// key rotates without a restart (see SECURITY.md).
    #[serde(default)]
    pub key_file: Option<std::path::PathBuf>,
    /// Clock skew allowed on `exp` and `nbf`, in seconds (default 5).
    #[serde(default)]
    pub leeway_secs: Option<u64>,
}

/// What a subscriber's token says.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub tenant: String,
    /// Missing reads as empty, which grants nothing (403).
    #[serde(default)]
    pub keys: Vec<String>,
    pub exp: u64,
}

/// The keys a checked request may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    AllKeys,
    Keys(Vec<String>),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("a token is required: send `Authorization: Bearer <token>` or `?token=<token>`")]
    Missing,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (its nbf is in the future)")]
    NotYetValid,
    #[error("the token is larger than {MAX_TOKEN_BYTES} bytes")]
    TooLarge,
    #[error("the token is not valid: {0}")]
    Invalid(String),
    #[error("the token is for tenant {0:?}, not this one")]
    WrongTenant(String),
    #[error("the token does not grant key {0:?}")]
    KeyNotGranted(String),
    #[error("the token grants no key; its `keys` claim must list keys, or \"*\" for all")]
    NoKeysGranted,
}

impl AuthError {
    /// 401 when the caller is not authenticated, 403 when it is but may not read this.
    pub fn forbidden(&self) -> bool {
        matches!(self, AuthError::WrongTenant(_) | AuthError::KeyNotGranted(_) | AuthError::NoKeysGranted)
    }
}

/// Longer tokens are refused before they are parsed.
pub const MAX_TOKEN_BYTES: usize = 8 << 10;
/// Clock skew allowed on `exp` and `nbf` unless the tenant sets `leeway_secs`.
pub const DEFAULT_LEEWAY_SECS: u64 = 5;

/// Checks tokens for one tenant.
pub struct Verifier {
    tenant: String,
    keys: Rotating<Vec<DecodingKey>>,
    validation: Validation,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("Verifier").field("tenant", &self.tenant).finish_non_exhaustive()
    }
}

/// Shortest HS256 secret accepted.
const MIN_SECRET_BYTES: usize = 16;

fn hs256_keys(text: &str) -> Result<Vec<DecodingKey>, String> {
    refuse_pem(text)?;
    Ok(lines(text, MIN_SECRET_BYTES)?.iter().map(|s| DecodingKey::from_secret(s.as_bytes())).collect())
}

/// HS256 secrets that are a PEM block (a public key's, most likely, with `algorithm`
/// left out) would let anyone who has that key sign tokens: refused, with the fix.
fn refuse_pem(text: &str) -> Result<(), String> {
    if text.contains("-----BEGIN ") {
        return Err("holds a PEM block, read as HS256 shared secrets: public keys are never \
                    secrets; set auth.algorithm to RS256 or ES256 for a key file of public keys"
            .into());
    }
    Ok(())
}

/// Every PEM block of `text`, read by `read`.
fn pem_keys(
    text: &str,
    read: fn(&[u8]) -> jsonwebtoken::errors::Result<DecodingKey>,
) -> Result<Vec<DecodingKey>, String> {
    const END: &str = "-----END ";
    let mut keys = Vec::new();
    let mut rest = text;
    while let Some(end) = rest.find(END) {
        let close = rest[end + END.len()..].find("-----").map_or(rest.len(), |i| end + END.len() + i + 5);
        keys.push(
            read(rest[..close].trim().as_bytes()).map_err(|e| format!("PEM key {}: {e}", keys.len() + 1))?,
        );
        rest = &rest[close..];
    }
    if keys.is_empty() { Err("holds no PEM public key".into()) } else { Ok(keys) }
}

fn rsa_keys(text: &str) -> Result<Vec<DecodingKey>, String> {
    pem_keys(text, DecodingKey::from_rsa_pem)
}

fn ec_keys(text: &str) -> Result<Vec<DecodingKey>, String> {
    pem_keys(text, DecodingKey::from_ec_pem)
}

impl Verifier {
    /// Builds a verifier; the error says which setting is wrong.
    pub fn new(tenant: &str, config: &AuthConfig) -> Result<Verifier, String> {
        let parse: fn(&str) -> Result<Vec<DecodingKey>, String>;
        let algorithm = match config.algorithm.as_deref() {
            None | Some("HS256") if config.public_key_pem.is_none() => {
                parse = hs256_keys;
                Algorithm::HS256
            }
            Some("RS256") => {
                parse = rsa_keys;
                Algorithm::RS256
            }
            Some("ES256") => {
                parse = ec_keys;
                Algorithm::ES256
            }
            _ => return Err(USAGE.into()),
        };
        let keys = match (&config.hs256_secret, &config.public_key_pem, &config.key_file) {
            (Some(secret), None, None) if algorithm == Algorithm::HS256 => {
                if secret.len() < MIN_SECRET_BYTES {
                    return Err(format!("auth.hs256_secret must be at least {MIN_SECRET_BYTES} bytes"));
                }
                refuse_pem(secret).map_err(|e| format!("auth.hs256_secret {e}"))?;
                Rotating::fixed(vec![DecodingKey::from_secret(secret.as_bytes())])
            }
            (None, Some(pem), None) if algorithm != Algorithm::HS256 => {
                Rotating::fixed(parse(pem).map_err(|e| format!("auth.public_key_pem: {e}"))?)
            }
            (None, None, Some(path)) => {
                Rotating::file(path, parse).map_err(|e| format!("auth.key_file {e}"))?
            }
            _ => return Err(USAGE.into()),
        };
        // Only this algorithm (no `none`, no HS256 keyed with a public key), `exp`
        // required, `nbf` honoured when present.
        let mut validation = Validation::new(algorithm);
        validation.leeway = config.leeway_secs.unwrap_or(DEFAULT_LEEWAY_SECS);
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp"]);
        Ok(Verifier { tenant: tenant.to_string(), keys, validation })
    }

    /// The claims of a token signed by any key in force.
    fn decode(&self, token: &str) -> Result<Claims, AuthError> {
        let keys = self.keys.current();
        let mut error = AuthError::Invalid("InvalidSignature".into());
        for key in keys.iter() {
            match jsonwebtoken::decode::<Claims>(token, key, &self.validation) {
                Ok(data) => return Ok(data.claims),
                // Another key may have signed it.
                Err(e) if matches!(e.kind(), ErrorKind::InvalidSignature) => {}
                Err(e) => {
                    error = match e.kind() {
                        ErrorKind::ExpiredSignature => AuthError::Expired,
                        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                        other => AuthError::Invalid(format!("{other:?}")),
                    };
                    break;
                }
            }
        }
        Err(error)
    }

    /// Checks `token` and which of `requested` keys (none = all it may) it can read.
    pub fn check(&self, token: Option<&str>, requested: &[String]) -> Result<Grant, AuthError> {
        let token = token.filter(|t| !t.is_empty()).ok_or(AuthError::Missing)?;
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::TooLarge);
        }
        let claims = self.decode(token)?;
        if claims.tenant != self.tenant {
            return Err(AuthError::WrongTenant(claims.tenant));
        }
        if claims.keys.is_empty() {
            return Err(AuthError::NoKeysGranted);
        }
        if claims.keys.iter().any(|k| k == "*") {
            return Ok(if requested.is_empty() { Grant::AllKeys } else { Grant::Keys(requested.to_vec()) });
        }
        if let Some(k) = requested.iter().find(|k| !claims.keys.contains(k)) {
            return Err(AuthError::KeyNotGranted(k.clone()));
        }
        Ok(Grant::Keys(if requested.is_empty() { claims.keys } else { requested.to_vec() }))
    }
}

/// Issues an HS256 token (`streamgate token`, tests).
pub fn issue_hs256(secret: &str, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
}

#[cfg(test)]
mod tests;
