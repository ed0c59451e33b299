//! OTP login, sessions, refresh rotation and logout over real HTTP, on SQLite and PostgreSQL.

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use common::{Backend, TestServer, assert_error, phone};
use serde_json::json;

on_both_backends!(
    otp_login_creates_the_user_once,
    otp_request_validates_and_cools_down,
    wrong_codes_lock_the_code_after_five_tries,
    codes_expire_and_work_once,
    refresh_rotates_and_detects_reuse,
    refresh_and_logout_by_cookie,
    logout_and_logout_all_end_sessions,
    access_tokens_expire,
    rate_limits_answer_429,
    failing_webhook_is_a_502_and_keeps_no_cooldown,
    every_private_route_needs_a_token,
);

async fn otp_login_creates_the_user_once(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let (status, headers, body) = srv
        .call(
            "POST",
            "/api/auth/otp",
            None,
            Some(json!({"phone": "(201) 555-0142"})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(
        body,
        json!({"expires_in": 300, "resend_after": 30}),
        "the code is never in the response"
    );
    assert!(headers.get("content-security-policy").is_some());
    let code = srv
        .inbox
        .last_code("+12015550142")
        .expect("delivered to the E.164 number");

    let (status, headers, body) = srv
        .call(
            "POST",
            "/api/auth/verify",
            None,
            Some(json!({"phone": "+1 201 555 0142", "code": code})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["expires_in"], 900);
    assert_eq!(body["user"]["phone"], "+12015550142");
    assert_eq!(body["user"]["display_name"], "");
    assert!(body["user"]["avatar_url"].is_null());
    let cookie = headers
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("cookie");
    assert!(cookie.starts_with("mescon_refresh="), "{cookie}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let first_id = body["user"]["id"].as_str().expect("id").to_string();

    let (status, me) = srv
        .get("/api/me", body["access_token"].as_str().expect("token"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["id"], first_id);

    srv.clock.advance(Duration::from_secs(31));
    let again = srv.login("+12015550142").await;
    assert_eq!(
        again.user_id, first_id,
        "a second login finds the same user"
    );
    srv.finish().await;
}

async fn otp_request_validates_and_cools_down(backend: Backend) {
    let srv = TestServer::start(backend).await;
    for bad in [
        json!({"phone": "not a number"}),
        json!({"phone": "12"}),
        json!({"phone": ""}),
    ] {
        let (status, _, body) = srv.call("POST", "/api/auth/otp", None, Some(bad)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_error(&body, "invalid_input");
    }
    let (status, _, body) = srv
        .call(
            "POST",
            "/api/auth/otp",
            None,
            Some(json!({"phon": "+12015550100"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_error(&body, "invalid_input");

    let p = phone(1);
    let (status, _, _) = srv
        .call("POST", "/api/auth/otp", None, Some(json!({"phone": p})))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, headers, body) = srv
        .call("POST", "/api/auth/otp", None, Some(json!({"phone": p})))
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_error(&body, "rate_limited");
    let retry: u64 = headers["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=30).contains(&retry), "{retry}");
    assert_eq!(srv.inbox.count(&p), 1);

    srv.clock.advance(Duration::from_secs(31));
    let (status, _, _) = srv
        .call("POST", "/api/auth/otp", None, Some(json!({"phone": p})))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(srv.inbox.count(&p), 2);
    srv.finish().await;
}

async fn wrong_codes_lock_the_code_after_five_tries(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let p = phone(2);
    srv.call("POST", "/api/auth/otp", None, Some(json!({"phone": p})))
        .await;
    let code = srv.inbox.last_code(&p).expect("code");
    let wrong = if code == "000000" { "000001" } else { "000000" };
    for attempt in 1..=5 {
        let (status, _, body) = srv
            .call(
                "POST",
                "/api/auth/verify",
                None,
                Some(json!({"phone": p, "code": wrong})),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "attempt {attempt}");
        assert_error(&body, "unauthorized");
    }
    let (status, headers, body) = srv
        .call(
            "POST",
            "/api/auth/verify",
            None,
            Some(json!({"phone": p, "code": code})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "even the right code is dead after 5 wrong tries"
    );
    assert_error(&body, "rate_limited");
    assert!(headers.contains_key("retry-after"));

    let (status, _, body) = srv
        .call(
            "POST",
            "/api/auth/verify",
            None,
            Some(json!({"phone": p, "code": "12ab56"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    srv.clock.advance(Duration::from_secs(31));
    let session = srv.login(&p).await;
    assert!(!session.access.is_empty(), "a new code works again");
    srv.finish().await;
}

async fn codes_expire_and_work_once(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let p = phone(3);
    srv.call("POST", "/api/auth/otp", None, Some(json!({"phone": p})))
        .await;
    let code = srv.inbox.last_code(&p).expect("code");
    srv.clock.advance(Duration::from_secs(301));
    let (status, _, body) = srv
        .call(
            "POST",
            "/api/auth/verify",
            None,
            Some(json!({"phone": p, "code": code})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "expired after 5 minutes: {body}"
    );

    srv.call("POST", "/api/auth/otp", None, Some(json!({"phone": p})))
        .await;
    let code = srv.inbox.last_code(&p).expect("code");
    let (status, _, _) = srv
        .call(
            "POST",
            "/api/auth/verify",
            None,
            Some(json!({"phone": p, "code": code})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = srv
        .call(
            "POST",
            "/api/auth/verify",
            None,
            Some(json!({"phone": p, "code": code})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a code works once");
    srv.finish().await;
}

async fn refresh_rotates_and_detects_reuse(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let s = srv.login(&phone(4)).await;
    let (status, _, body) = srv
        .call(
            "POST",
            "/api/auth/refresh",
            None,
            Some(json!({"refresh_token": s.refresh})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let access2 = body["access_token"].as_str().expect("access").to_string();
    let refresh2 = body["refresh_token"].as_str().expect("refresh").to_string();
    assert_ne!(refresh2, s.refresh, "refresh tokens rotate");
    assert_eq!(body["user"]["id"], s.user_id);
    assert_eq!(srv.get("/api/me", &access2).await.0, StatusCode::OK);

    // The old token again: someone replayed it. The whole session dies.
    let (status, _, body) = srv
        .call(
            "POST",
            "/api/auth/refresh",
            None,
            Some(json!({"refresh_token": s.refresh})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_error(&body, "unauthorized");
    let (status, _, _) = srv
        .call(
            "POST",
            "/api/auth/refresh",
            None,
            Some(json!({"refresh_token": refresh2})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the newest token of a revoked session is dead too"
    );
    assert_eq!(
        srv.get("/api/me", &access2).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        srv.get("/api/me", &s.access).await.0,
        StatusCode::UNAUTHORIZED
    );

    let (status, _, _) = srv
        .call(
            "POST",
            "/api/auth/refresh",
            None,
            Some(json!({"refresh_token": "made-up"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, body) = srv
        .call("POST", "/api/auth/refresh", None, Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    srv.finish().await;
}

async fn refresh_and_logout_by_cookie(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let s = srv.login(&phone(5)).await;
    let res = srv
        .http
        .post(srv.url("/api/auth/refresh"))
        .header("cookie", format!("mescon_refresh={}", s.refresh))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status().as_u16(), 200);
    let cookie = res.headers()["set-cookie"]
        .to_str()
        .expect("ascii")
        .to_string();
    let body: serde_json::Value = res.json().await.expect("json");
    let next = body["refresh_token"].as_str().expect("token");
    assert!(
        cookie.contains(next),
        "the cookie carries the rotated token"
    );

    let res = srv
        .http
        .post(srv.url("/api/auth/logout"))
        .header("cookie", format!("mescon_refresh={next}"))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status().as_u16(), 204);
    assert!(
        res.headers()["set-cookie"]
            .to_str()
            .expect("ascii")
            .contains("Max-Age=0")
    );
    let access = body["access_token"].as_str().expect("access");
    assert_eq!(srv.get("/api/me", access).await.0, StatusCode::UNAUTHORIZED);
    srv.finish().await;
}

async fn logout_and_logout_all_end_sessions(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let p = phone(6);
    let a = srv.login(&p).await;
    srv.clock.advance(Duration::from_secs(31));
    let b = srv.login(&p).await;
    srv.clock.advance(Duration::from_secs(31));
    let c = srv.login(&p).await;

    let (status, _, _) = srv
        .call(
            "POST",
            "/api/auth/logout",
            None,
            Some(json!({"refresh_token": a.refresh})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        srv.get("/api/me", &a.access).await.0,
        StatusCode::UNAUTHORIZED,
        "revoked at once"
    );
    assert_eq!(
        srv.get("/api/me", &b.access).await.0,
        StatusCode::OK,
        "other sessions live on"
    );

    let (status, _, _) = srv
        .call("POST", "/api/auth/logout-all", Some(&b.access), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for s in [&b, &c] {
        assert_eq!(
            srv.get("/api/me", &s.access).await.0,
            StatusCode::UNAUTHORIZED
        );
        let (status, _, _) = srv
            .call(
                "POST",
                "/api/auth/refresh",
                None,
                Some(json!({"refresh_token": s.refresh})),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    srv.finish().await;
}

async fn access_tokens_expire(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let s = srv.login(&phone(7)).await;
    srv.clock.advance(Duration::from_secs(899));
    assert_eq!(srv.get("/api/me", &s.access).await.0, StatusCode::OK);
    srv.clock.advance(Duration::from_secs(2));
    let (status, body) = srv.get("/api/me", &s.access).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_error(&body, "unauthorized");
    let (status, _, _) = srv
        .call(
            "POST",
            "/api/auth/refresh",
            None,
            Some(json!({"refresh_token": s.refresh})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the refresh token outlives the access token"
    );
    srv.finish().await;
}

async fn rate_limits_answer_429(backend: Backend) {
    let srv = TestServer::start_with(backend, |c| {
        c.limits.otp_per_ip_hour = 3;
        c.limits.auth_per_ip_minute = 4;
    })
    .await;
    for n in 0..3 {
        let (status, _, _) = srv
            .call(
                "POST",
                "/api/auth/otp",
                None,
                Some(json!({"phone": phone(20 + n)})),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    let (status, headers, body) = srv
        .call(
            "POST",
            "/api/auth/otp",
            None,
            Some(json!({"phone": phone(30)})),
        )
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_error(&body, "rate_limited");
    let retry: u64 = headers["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!(
        retry >= 60,
        "an hourly budget of 3 refills in 20 minutes, not seconds: {retry}"
    );

    let mut limited = false;
    for _ in 0..6 {
        let (status, _, _) = srv
            .call(
                "POST",
                "/api/auth/verify",
                None,
                Some(json!({"phone": phone(20), "code": "000000"})),
            )
            .await;
        limited |= status == StatusCode::TOO_MANY_REQUESTS;
    }
    assert!(limited, "verify attempts per IP are limited");
    srv.finish().await;
}

async fn failing_webhook_is_a_502_and_keeps_no_cooldown(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let p = phone(8);
    *srv.inbox.fail_with.lock().expect("lock") = Some(StatusCode::SERVICE_UNAVAILABLE);
    let (status, _, body) = srv
        .call("POST", "/api/auth/otp", None, Some(json!({"phone": p})))
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_error(&body, "otp_delivery_failed");
    *srv.inbox.fail_with.lock().expect("lock") = None;
    let (status, _, _) = srv
        .call("POST", "/api/auth/otp", None, Some(json!({"phone": p})))
        .await;
    assert_eq!(
        status,
        StatusCode::ACCEPTED,
        "a failed delivery does not start the resend cooldown"
    );
    srv.finish().await;
}

async fn every_private_route_needs_a_token(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let routes = [
        ("GET", "/api/me"),
        ("PATCH", "/api/me"),
        ("DELETE", "/api/me"),
        ("PUT", "/api/me/avatar"),
        ("DELETE", "/api/me/avatar"),
        ("GET", "/api/contacts"),
        ("POST", "/api/contacts"),
        ("PATCH", "/api/contacts/x"),
        ("DELETE", "/api/contacts/x"),
        ("GET", "/api/blocks"),
        ("PUT", "/api/blocks/x"),
        ("DELETE", "/api/blocks/x"),
        ("POST", "/api/auth/logout-all"),
        ("GET", "/api/users/x/avatar"),
    ];
    for (method, path) in routes {
        for token in [None, Some("not-a-jwt")] {
            let (status, _, body) = srv.call(method, path, token, Some(json!({}))).await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} with {token:?}: {body}"
            );
            assert_error(&body, "unauthorized");
        }
    }
    srv.finish().await;
}
