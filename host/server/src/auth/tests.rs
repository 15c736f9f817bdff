//! Tokens: grants, hostile tokens, leeway, key rotation, and a property test of the
//! authorisation rule over generated claims.

use super::*;

const SECRET: &str = "a-test-secret-of-some-length";

fn verifier() -> Verifier {
    let config = AuthConfig {
        hs256_secret: Some(SECRET.into()),
        public_key_pem: None,
        algorithm: None,
        leeway_secs: None,
        key_file: None,
    };
    Verifier::new("queue", &config).unwrap()
}

fn token(tenant: &str, keys: &[&str], exp_from_now: i64) -> String {
    let exp = (jsonwebtoken::get_current_timestamp() as i64 + exp_from_now) as u64;
    let claims = Claims { tenant: tenant.into(), keys: keys.iter().map(|k| k.to_string()).collect(), exp };
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
        key_file: None,
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
        key_file: None,
    };
    let v = Verifier::new("queue", &config).unwrap();
    let claims = Claims {
        tenant: "queue".into(),
        keys: vec!["u-9".into()],
        exp: jsonwebtoken::get_current_timestamp() + 60,
    };
    let key = jsonwebtoken::EncodingKey::from_ec_pem(ES256_PRIVATE.as_bytes()).unwrap();
    let token = jsonwebtoken::encode(&jsonwebtoken::Header::new(Algorithm::ES256), &claims, &key).unwrap();
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
        key_file: None,
    };
    assert!(Verifier::new("q", &cfg(Some("short"), None, None)).unwrap_err().contains("16 bytes"));
    assert!(
        Verifier::new("q", &cfg(None, Some("garbage"), Some("ES256")))
            .unwrap_err()
            .contains("public_key_pem")
    );
    assert!(Verifier::new("q", &cfg(None, None, None)).is_err());
    // A public key is never a shared secret: with `algorithm` left out it would be read
    // as HS256 secrets, and anyone holding the (public) key could sign tokens.
    let refused = Verifier::new("q", &cfg(Some(ES256_PUBLIC), None, None)).unwrap_err();
    assert!(refused.contains("hs256_secret holds a PEM block"), "{refused}");
    let path = std::env::temp_dir().join(format!("streamgate-pem-as-secret-{}", std::process::id()));
    std::fs::write(&path, ES256_PUBLIC).unwrap();
    let config = AuthConfig { key_file: Some(path.clone()), ..cfg(None, None, None) };
    let refused = Verifier::new("q", &config).err();
    std::fs::remove_file(&path).unwrap();
    let refused = refused.expect("a key file of public keys without an algorithm is refused");
    assert!(refused.contains("PEM block") && refused.contains("auth.algorithm"), "{refused}");
}

#[test]
fn keys_rotate_from_the_key_file_without_a_restart() {
    let path = std::env::temp_dir().join(format!("streamgate-keys-{}", std::process::id()));
    let (old, new) = ("old-secret-0123456789", "new-secret-0123456789");
    std::fs::write(&path, format!("{old}\n")).unwrap();
    let config = AuthConfig {
        hs256_secret: None,
        public_key_pem: None,
        algorithm: None,
        leeway_secs: None,
        key_file: Some(path.clone()),
    };
    let v = Verifier::new("queue", &config).unwrap();
    let exp = jsonwebtoken::get_current_timestamp() + 60;
    let signed = |secret: &str| {
        issue_hs256(secret, &Claims { tenant: "queue".into(), keys: vec!["u-1".into()], exp }).unwrap()
    };
    assert!(v.check(Some(&signed(old)), &[]).is_ok());
    assert!(v.check(Some(&signed(new)), &[]).is_err(), "not in force yet");
    std::fs::write(&path, format!("{old}\n{new}\n")).unwrap();
    v.keys.recheck_now();
    assert!(v.check(Some(&signed(old)), &[]).is_ok() && v.check(Some(&signed(new)), &[]).is_ok(), "both");
    std::fs::write(&path, format!("{new}\n")).unwrap();
    v.keys.recheck_now();
    assert_eq!(v.check(Some(&signed(old)), &[]), Err(AuthError::Invalid("InvalidSignature".into())));
    assert!(v.check(Some(&signed(new)), &[]).is_ok());
    let expired =
        issue_hs256(new, &Claims { tenant: "queue".into(), keys: vec!["u-1".into()], exp: 1 }).unwrap();
    assert_eq!(v.check(Some(&expired), &[]), Err(AuthError::Expired), "the key that signed it says why");
    std::fs::remove_file(&path).unwrap();
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn key() -> impl Strategy<Value = String> {
        prop::sample::select(vec!["u-1", "u-2", "u-3", "*", ""]).prop_map(String::from)
    }

    /// What the rule says a token grants (the model the verifier must match).
    fn expected(
        tenant: &str,
        keys: &[String],
        expired: bool,
        requested: &[String],
    ) -> Result<Grant, AuthError> {
        if expired {
            return Err(AuthError::Expired);
        }
        if tenant != "queue" {
            return Err(AuthError::WrongTenant(tenant.into()));
        }
        if keys.is_empty() {
            return Err(AuthError::NoKeysGranted);
        }
        if keys.iter().any(|k| k == "*") {
            return Ok(if requested.is_empty() { Grant::AllKeys } else { Grant::Keys(requested.to_vec()) });
        }
        if let Some(k) = requested.iter().find(|k| !keys.contains(k)) {
            return Err(AuthError::KeyNotGranted(k.clone()));
        }
        Ok(Grant::Keys(if requested.is_empty() { keys.to_vec() } else { requested.to_vec() }))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn a_token_grants_exactly_what_its_claims_say(
            tenant in prop::sample::select(vec!["queue", "taxi", "", "queue "]),
            keys in prop::collection::vec(key(), 0..4),
            // Seconds from now, clear of the 5 s leeway's edge: -7 is expired, -3 is not.
            exp_offset in prop::sample::select(vec![-100i64, -7, -3, 3, 100]),
            requested in prop::collection::vec(key().prop_filter("no empty ask", |k| !k.is_empty()), 0..3),
        ) {
            let exp = (jsonwebtoken::get_current_timestamp() as i64 + exp_offset) as u64;
            let t = issue_hs256(SECRET, &Claims { tenant: tenant.into(), keys: keys.clone(), exp }).unwrap();
            let got = verifier().check(Some(&t), &requested);
            prop_assert_eq!(&got, &expected(tenant, &keys, exp_offset < -5, &requested));
            // The property that matters: nothing beyond the grant, and never "all" without "*".
            match got {
                Ok(Grant::AllKeys) => prop_assert!(keys.iter().any(|k| k == "*")),
                Ok(Grant::Keys(granted)) => {
                    prop_assert!(!granted.is_empty());
                    prop_assert!(keys.iter().any(|k| k == "*") || granted.iter().all(|g| keys.contains(g)));
                }
                Err(_) => {}
            }
        }
    }
}
