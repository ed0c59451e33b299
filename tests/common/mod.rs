//! Test harness: a real Mescon server on an ephemeral port, on SQLite or on a fresh PostgreSQL
//! database, with a manual clock and an OTP webhook receiver that checks signatures and records codes.
//!
//! PostgreSQL is required, not optional: set `MESCON_TEST_POSTGRES` to an admin URL with CREATEDB
//! (default `postgres://postgres@127.0.0.1:5432/postgres`). Without a server there, tests fail loudly.

#![allow(dead_code)]

pub mod ws;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use mescon::clock::ManualClock;
use mescon::config::{Config, OtpSenderConfig};
use mescon::server::Running;
use serde_json::{Value, json};

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Generates one `#[tokio::test]` per backend for each listed async fn taking a [`Backend`].
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::common::Backend::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::common::Backend::Postgres).await
                }
            }
        )*
    };
}

const WEBHOOK_SECRET: &str = "test-webhook-secret-0123456789";

/// What the OTP webhook received, by phone.
#[derive(Clone, Default)]
pub struct Inbox {
    codes: Arc<Mutex<HashMap<String, Vec<String>>>>,
    /// When set, the webhook answers this status instead of 204.
    pub fail_with: Arc<Mutex<Option<StatusCode>>>,
}

impl Inbox {
    /// The newest code sent to `phone`.
    pub fn last_code(&self, phone: &str) -> Option<String> {
        self.codes.lock().ok()?.get(phone)?.last().cloned()
    }

    /// How many codes went to `phone`.
    pub fn count(&self, phone: &str) -> usize {
        self.codes
            .lock()
            .map(|c| c.get(phone).map_or(0, Vec::len))
            .unwrap_or(0)
    }
}

async fn webhook(State(inbox): State<Inbox>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let expected = mescon::auth::sender::signature(WEBHOOK_SECRET.as_bytes(), &body);
    let given = headers
        .get("x-mescon-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert_eq!(
        given, expected,
        "webhook signature must be sha256=<hex HMAC of the raw body>"
    );
    if let Some(status) = *inbox.fail_with.lock().expect("lock") {
        return status;
    }
    let v: Value = serde_json::from_slice(&body).expect("webhook body is JSON");
    assert_eq!(v["expires_in"], 300);
    let phone = v["phone"].as_str().expect("phone").to_string();
    let code = v["code"].as_str().expect("code").to_string();
    assert!(
        code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()),
        "code {code:?}"
    );
    inbox
        .codes
        .lock()
        .expect("lock")
        .entry(phone)
        .or_default()
        .push(code);
    StatusCode::NO_CONTENT
}

/// A running server plus everything a test needs to drive it.
pub struct TestServer {
    pub backend: Backend,
    pub base: String,
    pub addr: SocketAddr,
    pub clock: Arc<ManualClock>,
    pub inbox: Inbox,
    pub http: reqwest::Client,
    pub running: Option<Running>,
    /// The database URL the server uses (tests inspect stored rows through it).
    pub db_url: String,
    pg_db: Option<String>,
    _dir: tempfile::TempDir,
}

/// A signed-in user.
#[derive(Debug, Clone)]
pub struct Session {
    pub user_id: String,
    pub phone: String,
    pub access: String,
    pub refresh: String,
}

/// The admin URL of the test PostgreSQL server.
pub fn postgres_admin_url() -> String {
    std::env::var("MESCON_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Creates a fresh PostgreSQL database and returns (its URL, its name). Panics, loudly, without a server.
pub async fn fresh_postgres_database() -> (String, String) {
    use sqlx::Connection;
    let admin = postgres_admin_url();
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is required for these tests and did not answer at {admin}: {e}. \
             Start one (see README, `scripts/test` does it) or set MESCON_TEST_POSTGRES."
            )
        });
    let name = format!("mescon_t_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("CREATE DATABASE (the test role needs CREATEDB)");
    let mut url = url::Url::parse(&admin).expect("admin URL");
    url.set_path(&name);
    (url.to_string(), name)
}

impl TestServer {
    /// Starts a server with default test settings.
    pub async fn start(backend: Backend) -> TestServer {
        TestServer::start_with(backend, |_| {}).await
    }

    /// Starts a server after letting the test adjust its configuration.
    pub async fn start_with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> TestServer {
        mescon::server::install_crypto_provider();
        let dir = tempfile::tempdir().expect("tempdir");
        let (db_url, pg_db) = match backend {
            Backend::Sqlite => (None, None),
            Backend::Postgres => {
                let (url, name) = fresh_postgres_database().await;
                (Some(url), Some(name))
            }
        };

        let inbox = Inbox::default();
        let hook = axum::Router::new()
            .route("/otp", axum::routing::post(webhook))
            .with_state(inbox.clone());
        let hook_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind webhook");
        let hook_addr = hook_listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(hook_listener, hook).await });

        let mut config = Config::for_tests(dir.path(), db_url);
        let db_url = config.database_url.clone();
        config.otp_sender = OtpSenderConfig::Webhook {
            url: url::Url::parse(&format!("http://{hook_addr}/otp")).expect("url"),
            secret: WEBHOOK_SECRET.into(),
        };
        adjust(&mut config);
        let clock = ManualClock::new();
        let running = mescon::server::start(config, clock.clone())
            .await
            .expect("server starts");
        let addr = running.addr;
        TestServer {
            backend,
            base: format!("http://{addr}"),
            addr,
            clock,
            inbox,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
            running: Some(running),
            db_url,
            pg_db,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a request and returns (status, headers, JSON body or Null).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, HeaderMap, Value) {
        let mut req = self
            .http
            .request(method.parse().expect("method"), self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("request");
        let status = StatusCode::from_u16(res.status().as_u16()).expect("status");
        let headers = res.headers().clone();
        let bytes = res.bytes().await.expect("body");
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        (status, headers, value)
    }

    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        let (s, _, v) = self.call("GET", path, Some(token), None).await;
        (s, v)
    }

    /// Requests a code, reads it from the webhook, verifies: a signed-in session.
    pub async fn login(&self, phone: &str) -> Session {
        let (status, _, body) = self
            .call("POST", "/api/auth/otp", None, Some(json!({"phone": phone})))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        let e164 =
            mescon::phone::normalize(phone, phonenumber::country::Id::US).expect("test phone");
        let code = self.inbox.last_code(&e164).expect("code delivered");
        let (status, _, body) = self
            .call(
                "POST",
                "/api/auth/verify",
                None,
                Some(json!({"phone": phone, "code": code})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        Session {
            user_id: body["user"]["id"].as_str().expect("user id").into(),
            phone: e164,
            access: body["access_token"].as_str().expect("access").into(),
            refresh: body["refresh_token"].as_str().expect("refresh").into(),
        }
    }

    /// Stops the server and drops its PostgreSQL database.
    pub async fn finish(mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown(Duration::from_secs(1));
            running.wait().await.expect("clean shutdown");
        }
        if let Some(name) = self.pg_db.take() {
            use sqlx::Connection;
            if let Ok(mut conn) = sqlx::PgConnection::connect(&postgres_admin_url()).await {
                let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut conn)
                .await;
            }
        }
    }
}

/// Asserts the API's error JSON with `code`.
pub fn assert_error(body: &Value, code: &str) {
    assert_eq!(
        body["error"]["code"], code,
        "expected error {code}, got {body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

/// A test phone number (valid US numbers in the 555-01xx fiction range).
pub fn phone(n: u32) -> String {
    format!("+1201555{:04}", 100 + n)
}
