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

/// `[tenant.auth]`: exactly one of `hs256_secret` or `public_key_pem` (+ `algorithm`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Shared secret for HS256 tokens (env-expand it in your deployment, never commit it).
    pub hs256_secret: Option<String>,
    /// PEM public key for RS256 or ES256 tokens.
    pub public_key_pem: Option<String>,
    /// `RS256` or `ES256`, with `public_key_pem`.
    pub algorithm: Option<String>,
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
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("Verifier").field("tenant", &self.tenant).finish_non_exhaustive()
    }
}

impl Verifier {
    /// Builds a verifier; the error says which setting is wrong.
    pub fn new(tenant: &str, config: &AuthConfig) -> Result<Verifier, String> {
        let (key, algorithm) =
            match (&config.hs256_secret, &config.public_key_pem, config.algorithm.as_deref()) {
                (Some(secret), None, None | Some("HS256")) => {
                    if secret.len() < 16 {
                        return Err("auth.hs256_secret must be at least 16 bytes".into());
                    }
                    (DecodingKey::from_secret(secret.as_bytes()), Algorithm::HS256)
                }
                (None, Some(pem), Some("RS256")) => (
                    DecodingKey::from_rsa_pem(pem.as_bytes())
                        .map_err(|e| format!("auth.public_key_pem: {e}"))?,
                    Algorithm::RS256,
                ),
                (None, Some(pem), Some("ES256")) => (
                    DecodingKey::from_ec_pem(pem.as_bytes())
                        .map_err(|e| format!("auth.public_key_pem: {e}"))?,
                    Algorithm::ES256,
                ),
                _ => {
                    return Err(
                        "auth needs hs256_secret, or public_key_pem with algorithm = \"RS256\" or \"ES256\""
                            .into(),
                    );
                }
            };
        // Only this algorithm (no `none`, no HS256 keyed with a public key), `exp`
        // required, `nbf` honoured when present.
        let mut validation = Validation::new(algorithm);
        validation.leeway = config.leeway_secs.unwrap_or(DEFAULT_LEEWAY_SECS);
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp"]);
        Ok(Verifier { tenant: tenant.to_string(), key, validation })
    }

    /// Checks `token` and which of `requested` keys (none = all it may) it can read.
    pub fn check(&self, token: Option<&str>, requested: &[String]) -> Result<Grant, AuthError> {
        let token = token.filter(|t| !t.is_empty()).ok_or(AuthError::Missing)?;
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::TooLarge);
        }
        let claims = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                other => AuthError::Invalid(format!("{other:?}")),
            })?
            .claims;
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
mod tests {
    use super::*;

    const SECRET: &str = "a-test-secret-of-some-length";

    fn verifier() -> Verifier {
        let config = AuthConfig {
            hs256_secret: Some(SECRET.into()),
            public_key_pem: None,
            algorithm: None,
            leeway_secs: None,
        };
        Verifier::new("queue", &config).unwrap()
    }

    fn token(tenant: &str, keys: &[&str], exp_from_now: i64) -> String {
        let exp = (jsonwebtoken::get_current_timestamp() as i64 + exp_from_now) as u64;
        let claims =
            Claims { tenant: tenant.into(), keys: keys.iter().map(|k| k.to_string()).collect(), exp };
        issue_hs256(SECRET, &claims).unwrap()
    }

    #[test]
    fn grants_the_claimed_keys_and_refuses_others() {
        let v = verifier();
        let t = token("queue", &["u-1"], 60);
        assert_eq!(v.check(Some(&t), &[]), Ok(Grant::Keys(vec!["u-1".into()])));
        assert_eq!(v.check(Some(&t), &["u-1".into()]), Ok(Grant::Keys(vec!["u-1".into()])));
        assert_eq!(v.check(Some(&t), &["u-2".into()]), Err(AuthError::KeyNotGranted("u-2".into())));
        let all = token("queue", &["*"], 60);
        assert_eq!(v.check(Some(&all), &[]), Ok(Grant::AllKeys));
    }

    #[test]
    fn a_token_granting_no_key_reads_nothing() {
        let v = verifier();
        let empty = token("queue", &[], 60);
        assert_eq!(v.check(Some(&empty), &[]), Err(AuthError::NoKeysGranted));
        assert_eq!(v.check(Some(&empty), &["u-1".into()]), Err(AuthError::NoKeysGranted));
        assert!(AuthError::NoKeysGranted.forbidden(), "403, not 401");
        let missing = {
            #[derive(Serialize)]
            struct NoKeys {
                tenant: &'static str,
                exp: u64,
            }
            let claims = NoKeys { tenant: "queue", exp: jsonwebtoken::get_current_timestamp() + 60 };
            let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
            jsonwebtoken::encode(&jsonwebtoken::Header::new(Algorithm::HS256), &claims, &key).unwrap()
        };
        assert_eq!(v.check(Some(&missing), &[]), Err(AuthError::NoKeysGranted));
    }

    #[test]
    fn refuses_missing_expired_forged_and_foreign_tokens() {
        let v = verifier();
        assert_eq!(v.check(None, &[]), Err(AuthError::Missing));
        assert_eq!(v.check(Some(&token("queue", &["u-1"], -60)), &[]), Err(AuthError::Expired));
        let forged = {
            let claims = Claims { tenant: "queue".into(), keys: vec!["*".into()], exp: u64::MAX / 2 };
            issue_hs256("another-secret-entirely", &claims).unwrap()
        };
        assert!(matches!(v.check(Some(&forged), &[]), Err(AuthError::Invalid(_))));
        assert!(matches!(v.check(Some("not.a.jwt"), &[]), Err(AuthError::Invalid(_))));
        let foreign = token("taxi", &["*"], 60);
        let err = v.check(Some(&foreign), &[]).unwrap_err();
        assert!(err.forbidden());
    }

    /// A token with any header and claims, signed with the tenant's secret.
    fn raw_token(header: serde_json::Value, claims: serde_json::Value) -> String {
        use base64::Engine;
        let b64 = |v: &serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
        };
        let signing_input = format!("{}.{}", b64(&header), b64(&claims));
        let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
        let signature = jsonwebtoken::crypto::sign(signing_input.as_bytes(), &key, Algorithm::HS256).unwrap();
        format!("{signing_input}.{signature}")
    }

    #[test]
    fn hostile_tokens_are_refused() {
        let v = verifier();
        let now = jsonwebtoken::get_current_timestamp();
        let claims = serde_json::json!({"tenant": "queue", "keys": ["*"], "exp": now + 60});
        // `alg: none`, unsigned and signed.
        let none = serde_json::json!({"alg": "none", "typ": "JWT"});
        let unsigned = raw_token(none.clone(), claims.clone());
        let unsigned = format!("{}.", unsigned.rsplit_once('.').unwrap().0);
        assert!(matches!(v.check(Some(&unsigned), &[]), Err(AuthError::Invalid(_))), "alg none, unsigned");
        assert!(matches!(v.check(Some(&raw_token(none, claims.clone())), &[]), Err(AuthError::Invalid(_))));
        // Another algorithm than the tenant's.
        let hs512 = serde_json::json!({"alg": "HS512", "typ": "JWT"});
        assert!(matches!(v.check(Some(&raw_token(hs512, claims.clone())), &[]), Err(AuthError::Invalid(_))));
        // No `exp`, or `nbf` in the future beyond the leeway.
        let hs256 = serde_json::json!({"alg": "HS256", "typ": "JWT"});
        let no_exp = serde_json::json!({"tenant": "queue", "keys": ["*"]});
        assert!(matches!(v.check(Some(&raw_token(hs256.clone(), no_exp)), &[]), Err(AuthError::Invalid(_))));
        let later = serde_json::json!({"tenant": "queue", "keys": ["*"], "exp": now + 600, "nbf": now + 300});
        assert_eq!(v.check(Some(&raw_token(hs256.clone(), later)), &[]), Err(AuthError::NotYetValid));
        // A `kid` names no other key: the tenant's one key decides.
        let kid = serde_json::json!({"alg": "HS256", "typ": "JWT", "kid": "someone-elses"});
        assert_eq!(v.check(Some(&raw_token(kid, claims.clone())), &[]), Ok(Grant::AllKeys));
        // Oversized: refused before it is parsed.
        let huge = serde_json::json!({"tenant": "queue", "keys": vec!["k"; 4000], "exp": now + 60});
        assert_eq!(v.check(Some(&raw_token(hs256, huge)), &[]), Err(AuthError::TooLarge));
        assert_eq!(v.check(Some(&"x".repeat(MAX_TOKEN_BYTES + 1)), &[]), Err(AuthError::TooLarge));
    }

    #[test]
    fn clock_skew_is_the_configured_leeway() {
        let config = |leeway_secs| AuthConfig {
            hs256_secret: Some(SECRET.into()),
            public_key_pem: None,
            algorithm: None,
            leeway_secs,
        };
        let expired_3s_ago = token("queue", &["u-1"], -3);
        assert!(verifier().check(Some(&expired_3s_ago), &[]).is_ok(), "within the default 5 s");
        let strict = Verifier::new("queue", &config(Some(0))).unwrap();
        assert_eq!(strict.check(Some(&expired_3s_ago), &[]), Err(AuthError::Expired));
        let lenient = Verifier::new("queue", &config(Some(120))).unwrap();
        assert!(lenient.check(Some(&token("queue", &["u-1"], -60)), &[]).is_ok());
    }

    /// A throwaway P-256 key pair, made for this test only.
    const ES256_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgRqbELd+jo4Ttc/9n\nHvU1TJKosl13kag+fiGI1/2Bs5GhRANCAASoTg9cucNd1NkDfCf90JntOQqbU7L7\nmme77Suir3DLzagwYZg8od5Kn7YNZ/6sqN0XFbWC2AyDGazYCKQNYDSg\n-----END PRIVATE KEY-----\n";
    const ES256_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEqE4PXLnDXdTZA3wn/dCZ7TkKm1Oy\n+5pnu+0roq9wy82oMGGYPKHeSp+2DWf+rKjdFxW1gtgMgxms2AikDWA0oA==\n-----END PUBLIC KEY-----\n";

    #[test]
    fn es256_tokens_verify_with_the_public_key() {
        let config = AuthConfig {
            hs256_secret: None,
            public_key_pem: Some(ES256_PUBLIC.into()),
            algorithm: Some("ES256".into()),
            leeway_secs: None,
        };
        let v = Verifier::new("queue", &config).unwrap();
        let claims = Claims {
            tenant: "queue".into(),
            keys: vec!["u-9".into()],
            exp: jsonwebtoken::get_current_timestamp() + 60,
        };
        let key = jsonwebtoken::EncodingKey::from_ec_pem(ES256_PRIVATE.as_bytes()).unwrap();
        let token =
            jsonwebtoken::encode(&jsonwebtoken::Header::new(Algorithm::ES256), &claims, &key).unwrap();
        assert_eq!(v.check(Some(&token), &[]), Ok(Grant::Keys(vec!["u-9".into()])));
        let hs = issue_hs256("a-test-secret-of-some-length", &claims).unwrap();
        assert!(matches!(v.check(Some(&hs), &[]), Err(AuthError::Invalid(_))), "no algorithm confusion");
    }

    #[test]
    fn bad_settings_are_named() {
        let cfg = |s: Option<&str>, p: Option<&str>, a: Option<&str>| AuthConfig {
            hs256_secret: s.map(String::from),
            public_key_pem: p.map(String::from),
            algorithm: a.map(String::from),
            leeway_secs: None,
        };
        assert!(Verifier::new("q", &cfg(Some("short"), None, None)).unwrap_err().contains("16 bytes"));
        assert!(
            Verifier::new("q", &cfg(None, Some("garbage"), Some("ES256")))
                .unwrap_err()
                .contains("public_key_pem")
        );
        assert!(Verifier::new("q", &cfg(None, None, None)).is_err());
    }
}
