//! Profiles, avatars, account deletion, contacts, blocks and the operations endpoints over real HTTP,
//! on SQLite and PostgreSQL.

mod common;

use std::io::Cursor;

use axum::http::StatusCode;
use common::{Backend, TestServer, assert_error, phone};
use serde_json::json;

on_both_backends!(
    profile_name_rules,
    bad_bodies_get_the_error_json,
    avatar_upload_is_checked_reencoded_and_served,
    deleting_the_account_frees_the_number,
    contacts_crud_is_private_to_its_owner,
    blocks_list_add_remove,
    operations_endpoints,
);

async fn profile_name_rules(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let s = srv.login(&phone(1)).await;
    let (status, _, body) = srv
        .call(
            "PATCH",
            "/api/me",
            Some(&s.access),
            Some(json!({"display_name": "  Ada Lovelace  "})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["display_name"], "Ada Lovelace", "trimmed");
    assert_eq!(
        srv.get("/api/me", &s.access).await.1["display_name"],
        "Ada Lovelace"
    );

    let long = "x".repeat(65);
    for bad in ["", "   ", long.as_str(), "bad\u{0007}name", "line\nbreak"] {
        let (status, _, body) = srv
            .call(
                "PATCH",
                "/api/me",
                Some(&s.access),
                Some(json!({"display_name": bad})),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad:?}");
        assert_error(&body, "invalid_input");
    }
    let ok64 = "é".repeat(64);
    let (status, _, _) = srv
        .call(
            "PATCH",
            "/api/me",
            Some(&s.access),
            Some(json!({"display_name": ok64})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "64 characters (not bytes) is fine");
    srv.finish().await;
}

async fn bad_bodies_get_the_error_json(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let s = srv.login(&phone(2)).await;
    let send = |body: Vec<u8>, content_type: &'static str| {
        srv.http
            .patch(srv.url("/api/me"))
            .bearer_auth(&s.access)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let cases: Vec<(Vec<u8>, &str, u16, &str)> = vec![
        (
            b"{not json".to_vec(),
            "application/json",
            422,
            "invalid_input",
        ),
        (
            b"[1,2,3]".to_vec(),
            "application/json",
            422,
            "invalid_input",
        ),
        (
            br#"{"display_name": 5}"#.to_vec(),
            "application/json",
            422,
            "invalid_input",
        ),
        (
            br#"{"display_name": "x"}"#.to_vec(),
            "text/plain",
            415,
            "unsupported_media_type",
        ),
        (
            format!(r#"{{"display_name": "{}"}}"#, "y".repeat(100_000)).into_bytes(),
            "application/json",
            413,
            "payload_too_large",
        ),
    ];
    for (body, content_type, status, code) in cases {
        let res = send(body, content_type).await.expect("send");
        assert_eq!(res.status().as_u16(), status, "{content_type} {code}");
        let body: serde_json::Value = res.json().await.expect("error JSON");
        assert_error(&body, code);
    }
    let (status, _, body) = srv.call("GET", "/api/no/such/route", None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "not_found");
    srv.finish().await;
}

fn test_png(width: u32, height: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 90])
    });
    let mut out = Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(image)
        .write_to(&mut out, image::ImageFormat::Png)
        .expect("encode");
    out.into_inner()
}

async fn avatar_upload_is_checked_reencoded_and_served(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let s = srv.login(&phone(3)).await;
    let other = srv.login(&phone(4)).await;
    let put = |body: Vec<u8>, content_type: &'static str| {
        srv.http
            .put(srv.url("/api/me/avatar"))
            .bearer_auth(&s.access)
            .header("content-type", content_type)
            .body(body)
            .send()
    };

    let res = put(test_png(1200, 800), "image/png").await.expect("send");
    assert_eq!(res.status().as_u16(), 200);
    let profile: serde_json::Value = res.json().await.expect("json");
    let url = profile["avatar_url"]
        .as_str()
        .expect("avatar_url set")
        .to_string();
    assert!(
        url.starts_with(&format!("/api/users/{}/avatar", s.user_id)),
        "{url}"
    );

    // The signed URL works without a token (for <img src>), with the right headers.
    let res = srv.http.get(srv.url(&url)).send().await.expect("get");
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(
        res.headers()["content-type"],
        "image/jpeg",
        "opaque pictures are stored as JPEG"
    );
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    assert!(
        res.headers()["cache-control"]
            .to_str()
            .expect("ascii")
            .contains("max-age")
    );
    let bytes = res.bytes().await.expect("bytes");
    let image = image::load_from_memory(&bytes).expect("a real image");
    assert_eq!(
        (image.width(), image.height()),
        (512, 341),
        "bounded to 512 px"
    );

    // Unsigned: only with a token. Forged signature: refused.
    let bare = format!("/api/users/{}/avatar", s.user_id);
    assert_eq!(
        srv.call("GET", &bare, None, None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        srv.call("GET", &bare, Some(&other.access), None).await.0,
        StatusCode::OK
    );
    let forged = format!("{bare}?v=1&sig=000000000000000000000000");
    assert_eq!(
        srv.call("GET", &forged, None, None).await.0,
        StatusCode::UNAUTHORIZED
    );

    // Refusals.
    let res = put(b"definitely not a picture".to_vec(), "image/png")
        .await
        .expect("send");
    assert_eq!(res.status().as_u16(), 422);
    assert_error(&res.json().await.expect("json"), "invalid_input");
    let res = put(test_png(10, 10), "text/plain").await.expect("send");
    assert_eq!(res.status().as_u16(), 415);
    assert_error(&res.json().await.expect("json"), "unsupported_media_type");
    let res = put(vec![0u8; 6 * 1024 * 1024], "image/png")
        .await
        .expect("send");
    assert_eq!(res.status().as_u16(), 413);
    assert_error(&res.json().await.expect("json"), "payload_too_large");

    let (status, _, profile) = srv
        .call("DELETE", "/api/me/avatar", Some(&s.access), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(profile["avatar_url"].is_null());
    assert_eq!(
        srv.call("GET", &url, None, None).await.0,
        StatusCode::NOT_FOUND
    );
    srv.finish().await;
}

async fn deleting_the_account_frees_the_number(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let p = phone(5);
    let s = srv.login(&p).await;
    let friend = srv.login(&phone(6)).await;
    srv.call(
        "POST",
        "/api/contacts",
        Some(&friend.access),
        Some(json!({"phone": p, "name": "Leaving"})),
    )
    .await;
    srv.call(
        "POST",
        "/api/contacts",
        Some(&s.access),
        Some(json!({"phone": phone(6), "name": "Friend"})),
    )
    .await;

    let (status, _, _) = srv.call("DELETE", "/api/me", Some(&s.access), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        srv.get("/api/me", &s.access).await.0,
        StatusCode::UNAUTHORIZED,
        "sessions are gone"
    );
    let (_, contacts) = srv.get("/api/contacts", &friend.access).await;
    assert!(
        contacts[0]["user"].is_null(),
        "the number no longer has an account: {contacts}"
    );

    srv.clock.advance(std::time::Duration::from_secs(31));
    let again = srv.login(&p).await;
    assert_ne!(again.user_id, s.user_id, "a new account, not the old one");
    let (_, contacts) = srv.get("/api/contacts", &again.access).await;
    assert_eq!(contacts, json!([]), "the old contact book is gone");
    srv.finish().await;
}

async fn contacts_crud_is_private_to_its_owner(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let a = srv.login(&phone(10)).await;
    let b = srv.login(&phone(11)).await;
    srv.call(
        "PATCH",
        "/api/me",
        Some(&b.access),
        Some(json!({"display_name": "Bob"})),
    )
    .await;

    let (status, _, bob) = srv
        .call(
            "POST",
            "/api/contacts",
            Some(&a.access),
            Some(json!({"phone": "201-555-0111", "name": "bob"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{bob}");
    assert_eq!(bob["phone"], b.phone);
    assert_eq!(
        bob["user"]["id"], b.user_id,
        "a number with an account links to it"
    );
    assert_eq!(bob["user"]["display_name"], "Bob");
    let (status, _, zed) = srv
        .call(
            "POST",
            "/api/contacts",
            Some(&a.access),
            Some(json!({"phone": phone(99), "name": "Zed"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(zed["user"].is_null(), "no account behind this number");
    let (status, _, _) = srv
        .call(
            "POST",
            "/api/contacts",
            Some(&a.access),
            Some(json!({"phone": phone(98), "name": "Alice"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);

    let (_, list) = srv.get("/api/contacts", &a.access).await;
    let names: Vec<&str> = list
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["Alice", "bob", "Zed"],
        "sorted by name, case-insensitively"
    );

    let (status, _, body) = srv
        .call(
            "POST",
            "/api/contacts",
            Some(&a.access),
            Some(json!({"phone": b.phone, "name": "Bob again"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_error(&body, "conflict");
    for bad in [
        json!({"phone": "nope", "name": "X"}),
        json!({"phone": phone(50), "name": ""}),
        json!({"phone": phone(50)}),
    ] {
        let (status, _, body) = srv
            .call("POST", "/api/contacts", Some(&a.access), Some(bad))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_error(&body, "invalid_input");
    }

    let bob_path = format!("/api/contacts/{}", bob["id"].as_str().expect("id"));
    let (status, _, renamed) = srv
        .call(
            "PATCH",
            &bob_path,
            Some(&a.access),
            Some(json!({"name": "Robert"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(renamed["name"], "Robert");
    assert_eq!(renamed["phone"], b.phone, "untouched fields stay");
    let (status, _, _) = srv
        .call(
            "PATCH",
            &bob_path,
            Some(&a.access),
            Some(json!({"phone": phone(99)})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "renumbering onto another contact's number"
    );

    // A stranger sees nothing and changes nothing.
    assert_eq!(srv.get(&bob_path, &b.access).await.0, StatusCode::NOT_FOUND);
    let (status, _, body) = srv
        .call(
            "PATCH",
            &bob_path,
            Some(&b.access),
            Some(json!({"name": "pwned"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "not_found");
    assert_eq!(
        srv.call("DELETE", &bob_path, Some(&b.access), None).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(srv.get("/api/contacts", &b.access).await.1, json!([]));
    assert_eq!(
        srv.get(&bob_path, &a.access).await.1["name"],
        "Robert",
        "unchanged by the stranger"
    );

    assert_eq!(
        srv.call("DELETE", &bob_path, Some(&a.access), None).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(srv.get(&bob_path, &a.access).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        srv.call("DELETE", &bob_path, Some(&a.access), None).await.0,
        StatusCode::NOT_FOUND
    );
    srv.finish().await;
}

async fn blocks_list_add_remove(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let a = srv.login(&phone(20)).await;
    let b = srv.login(&phone(21)).await;
    let path = format!("/api/blocks/{}", b.user_id);
    assert_eq!(
        srv.call("PUT", &path, Some(&a.access), None).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        srv.call("PUT", &path, Some(&a.access), None).await.0,
        StatusCode::NO_CONTENT,
        "idempotent"
    );
    let (_, list) = srv.get("/api/blocks", &a.access).await;
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    assert_eq!(list[0]["id"], b.user_id);
    assert_eq!(
        srv.get("/api/blocks", &b.access).await.1,
        json!([]),
        "B's list is B's own"
    );
    assert_eq!(
        srv.call("PUT", "/api/blocks/nobody", Some(&a.access), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let own = format!("/api/blocks/{}", a.user_id);
    assert_eq!(
        srv.call("PUT", &own, Some(&a.access), None).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        srv.call("DELETE", &path, Some(&a.access), None).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(srv.get("/api/blocks", &a.access).await.1, json!([]));
    srv.finish().await;
}

async fn operations_endpoints(backend: Backend) {
    let srv = TestServer::start(backend).await;
    assert_eq!(
        srv.call("GET", "/healthz", None, None).await.0,
        StatusCode::OK
    );
    assert_eq!(
        srv.call("GET", "/readyz", None, None).await.0,
        StatusCode::OK
    );
    srv.login(&phone(30)).await;
    let res = srv
        .http
        .get(srv.url("/metrics"))
        .send()
        .await
        .expect("metrics");
    assert_eq!(res.status().as_u16(), 200);
    let text = res.text().await.expect("text");
    assert!(text.contains("http_requests_total"), "{text}");
    assert!(
        text.contains("route=\"/api/auth/verify\""),
        "labelled by route"
    );
    // The SFU's own figures, read at the scrape.
    for name in [
        "sfu_rooms 0",
        "sfu_connections 0",
        "sfu_cached_packets 0",
        "sfu_forwarded_packets_total",
        "sfu_repairs_total{outcome=\"released\"} 0",
    ] {
        assert!(text.contains(name), "{name} in {text}");
    }

    let (status, _, doc) = srv.call("GET", "/api/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        doc["openapi"]
    );
    for path in [
        "/api/auth/otp",
        "/api/auth/verify",
        "/api/me",
        "/api/me/avatar",
        "/api/contacts/{id}",
        "/api/blocks/{user_id}",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} documented");
    }

    let res = srv.http.get(srv.url("/")).send().await.expect("index");
    assert_eq!(res.status().as_u16(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/html")
    );
    let csp = res.headers()["content-security-policy"]
        .to_str()
        .expect("ascii");
    assert!(
        csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    assert!(
        res.headers().get("access-control-allow-origin").is_none(),
        "no permissive CORS"
    );
    srv.finish().await;
}
