//! Handler tests of subscriber tokens: keys granted, keys refused, tokens granting nothing.

use super::*;

fn token(keys: &[&str], exp_from_now: i64) -> String {
    let exp = (jsonwebtoken::get_current_timestamp() as i64 + exp_from_now) as u64;
    let keys = keys.iter().map(|k| k.to_string()).collect();
    crate::auth::issue_hs256(SECRET, &crate::auth::Claims { tenant: "taxi".into(), keys, exp }).unwrap()
}

/// The taxi tenant requiring HS256 tokens signed with [`SECRET`].
fn app_with_tokens() -> (Router, Arc<TenantHandle>) {
    let config = crate::auth::AuthConfig {
        hs256_secret: Some(SECRET.into()),
        public_key_pem: None,
        algorithm: None,
        leeway_secs: None,
        key_file: None,
    };
    app_with(Some(crate::auth::Verifier::new("taxi", &config).unwrap()))
}

#[tokio::test]
async fn subscribers_need_a_token_granting_their_keys() {
    let (app, handle) = app_with_tokens();
    publish(&handle, 1, "u-1");
    publish(&handle, 2, "u-2");
    let status = |resp: &axum::response::Response| resp.status();
    let resp = get(&app, "/tenants/taxi/events?key=u-1", None).await;
    assert_eq!(status(&resp), StatusCode::UNAUTHORIZED);
    assert!(text(resp).await.contains("token is required"));
    let forged = crate::auth::issue_hs256(
        "not-the-secret-at-all",
        &crate::auth::Claims { tenant: "taxi".into(), keys: vec!["*".into()], exp: u64::MAX / 2 },
    )
    .unwrap();
    let resp = get(&app, &format!("/tenants/taxi/events?token={forged}"), None).await;
    assert_eq!(status(&resp), StatusCode::UNAUTHORIZED);
    let resp = get(&app, &format!("/tenants/taxi/events?token={}", token(&["u-1"], -60)), None).await;
    assert_eq!(status(&resp), StatusCode::UNAUTHORIZED);
    assert!(text(resp).await.contains("expired"));
    let resp = get(&app, &format!("/tenants/taxi/events?key=u-2&token={}", token(&["u-1"], 60)), None).await;
    assert_eq!(status(&resp), StatusCode::FORBIDDEN);
    assert!(text(resp).await.contains("u-2"));

    // A good token in ?token= (EventSource cannot set headers) reads its own key only.
    let uri = format!("/tenants/taxi/events?lastEventId=0-0&token={}", token(&["u-1"], 60));
    let resp = get(&app, &uri, None).await;
    assert_eq!(status(&resp), StatusCode::OK);
    let mut body = resp.into_body().into_data_stream();
    let mut seen = String::new();
    read_until(&mut body, &mut seen, "id: 1-0").await;
    assert!(!seen.contains("u-2"), "{seen}");
    // The header works too, for the snapshot as well.
    let bearer = format!("Bearer {}", token(&["u-2"], 60));
    let resp = get(&app, "/tenants/taxi/snapshot", Some(("authorization", &bearer))).await;
    assert_eq!(status(&resp), StatusCode::OK);
    assert_eq!(text(resp).await, r#"[{"mediaId":"u-2","timestamp":2}]"#);
}

#[tokio::test]
async fn a_token_granting_no_key_is_refused_everywhere() {
    let (app, handle) = app_with_tokens();
    publish(&handle, 1, "u-1");
    let empty = token(&[], 60);
    for uri in [
        format!("/tenants/taxi/events?token={empty}"),
        format!("/tenants/taxi/events?lastEventId=0-0&token={empty}"),
        format!("/tenants/taxi/events?key=u-1&token={empty}"),
        format!("/tenants/taxi/snapshot?token={empty}"),
    ] {
        let resp = get(&app, &uri, None).await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{uri}");
        assert!(text(resp).await.contains("grants no key"), "{uri}");
    }
}
