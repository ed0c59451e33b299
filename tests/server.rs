//! The server as a whole: HTTPS when a certificate is configured, and the WebSocket's auth deadline.

mod common;

use std::time::Duration;

use common::ws::{Ended, WsClient};
use common::{Backend, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_https_with_the_configured_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("certificate");
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).expect("write cert");
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).expect("write key");
    let srv = TestServer::start_with(Backend::Sqlite, |c| {
        c.tls = Some((cert_path.clone(), key_path.clone()))
    })
    .await;

    let root = reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).expect("root");
    let client = reqwest::Client::builder()
        .add_root_certificate(root)
        .resolve("localhost", srv.addr)
        .build()
        .expect("client");
    let url = format!("https://localhost:{}/healthz", srv.addr.port());
    let res = client.get(&url).send().await.expect("https request");
    assert_eq!(res.status().as_u16(), 200);
    assert!(
        res.headers().contains_key("strict-transport-security"),
        "HSTS over HTTPS"
    );
    // Plain HTTP to the TLS port is not served.
    let plain = srv
        .http
        .get(format!("http://{}/healthz", srv.addr))
        .send()
        .await;
    assert!(
        !plain.is_ok_and(|r| r.status().is_success()),
        "plain HTTP is refused on the HTTPS port"
    );

    // The refresh cookie is Secure over HTTPS.
    let p = common::phone(1);
    let res = client
        .post(format!(
            "https://localhost:{}/api/auth/otp",
            srv.addr.port()
        ))
        .json(&serde_json::json!({"phone": p}))
        .send()
        .await
        .expect("otp");
    assert_eq!(res.status().as_u16(), 202);
    let code = srv.inbox.last_code(&p).expect("code");
    let res = client
        .post(format!(
            "https://localhost:{}/api/auth/verify",
            srv.addr.port()
        ))
        .json(&serde_json::json!({"phone": p, "code": code}))
        .send()
        .await
        .expect("verify");
    let cookie = res.headers()["set-cookie"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(cookie.contains("; Secure"), "{cookie}");
    srv.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_never_authenticates_is_closed_after_10_s() {
    let srv = TestServer::start(Backend::Sqlite).await;
    let mut ws = WsClient::open(&srv.base).await;
    let started = std::time::Instant::now();
    let err = ws.recv_type("error").await;
    assert_eq!(err["code"], "unauthorized");
    assert_eq!(ws.ended().await, Ended::Closed(4401));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(9) && waited < Duration::from_secs(14),
        "{waited:?}"
    );
    srv.finish().await;
}
