//! Crash safety of the real binary: stream messages, `kill -9` the server mid-stream, start it again
//! on the same data: every message that was acknowledged is there exactly once, and seqs have no gaps.
//! Also checks the default `log` OTP sender's line format, which the test reads codes from.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::ws::WsClient;
use common::{Backend, fresh_postgres_database, phone};
use serde_json::{Value, json};

on_both_backends!(acked_messages_survive_kill_9);

/// The server binary as a child process, with its log lines collected.
struct Server {
    child: Child,
    base: String,
    log: Arc<Mutex<Vec<String>>>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl Server {
    async fn start(data_dir: &std::path::Path, database_url: &str, port: u16) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mescon"))
            .env("MESCON_LISTEN", format!("127.0.0.1:{port}"))
            .env("MESCON_DATA_DIR", data_dir)
            .env("DATABASE_URL", database_url)
            .env("MESCON_MEDIA_UDP", "127.0.0.1:0")
            .env("MESCON_ICE_TCP", "")
            .env("MESCON_TURN_LISTEN", "")
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn mescon");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().expect("stdout");
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().expect("lock").push(line);
            }
        });
        // Wrapped at once, so that a failed start still kills the child (Drop).
        let server = Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        };
        let http = reqwest::Client::new();
        for _ in 0..300 {
            if http
                .get(format!("{}/readyz", server.base))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "the server did not become ready; log: {:?}",
            server.log.lock().expect("lock")
        );
    }

    /// The code from the `log` sender's line `otp phone=<e164> code=<6 digits>`.
    async fn otp_code(&self, e164: &str) -> String {
        let needle = format!("otp phone={e164} code=");
        for _ in 0..100 {
            let found = self.log.lock().expect("lock").iter().rev().find_map(|l| {
                l.split_once(&needle)
                    .map(|(_, rest)| rest.chars().take(6).collect::<String>())
            });
            if let Some(code) = found {
                assert!(
                    code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()),
                    "{code}"
                );
                return code;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no otp line for {e164} in the log");
    }

    async fn login(&self, n: u32) -> (String, String) {
        let http = reqwest::Client::new();
        let p = phone(n);
        let res = http
            .post(format!("{}/api/auth/otp", self.base))
            .json(&json!({"phone": p}))
            .send()
            .await
            .expect("otp");
        assert_eq!(res.status().as_u16(), 202);
        let code = self.otp_code(&p).await;
        let body: Value = http
            .post(format!("{}/api/auth/verify", self.base))
            .json(&json!({"phone": p, "code": code}))
            .send()
            .await
            .expect("verify")
            .json()
            .await
            .expect("json");
        (
            body["user"]["id"].as_str().expect("id").to_string(),
            body["access_token"].as_str().expect("token").to_string(),
        )
    }

    fn kill_9(&mut self) {
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn acked_messages_survive_kill_9(backend: Backend) {
    mescon::server::install_crypto_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let database_url = match backend {
        Backend::Sqlite => format!("sqlite://{}", dir.path().join("mescon.db").display()),
        Backend::Postgres => fresh_postgres_database().await.0,
    };
    let port = free_port();
    let mut server = Server::start(dir.path(), &database_url, port).await;
    let (_, a_token) = server.login(1).await;
    let (b_id, _) = server.login(2).await;

    // Stream sends without waiting for acks; kill the server once a few hundred are acknowledged.
    let mut ws = WsClient::connect(&server.base, &a_token).await;
    let mut acked: HashMap<String, i64> = HashMap::new();
    let mut sent = 0;
    let mut killed = false;
    while !killed {
        for _ in 0..20 {
            ws.send(json!({"type": "message.send", "to": b_id, "client_id": format!("k{sent}"), "body": format!("n{sent}")}))
                .await;
            sent += 1;
        }
        while acked.len() + 10 < sent {
            let ack = ws.recv_type("message.ack").await;
            acked.insert(
                ack["client_id"].as_str().expect("cid").into(),
                ack["message"]["seq"].as_i64().expect("seq"),
            );
            if acked.len() >= 300 {
                server.kill_9();
                killed = true;
                break;
            }
        }
    }
    drop(ws);
    assert!(acked.len() >= 300);

    // Same data directory, same database: the generated secrets are read back, the token still works.
    let server = Server::start(dir.path(), &database_url, port).await;
    let http = reqwest::Client::new();
    let mut stored: Vec<Value> = Vec::new();
    let mut after = 0;
    loop {
        let page: Vec<Value> = http
            .get(format!(
                "{}/api/conversations/with/{b_id}/messages?after_seq={after}&limit=200",
                server.base
            ))
            .bearer_auth(&a_token)
            .send()
            .await
            .expect("history")
            .json()
            .await
            .expect("json");
        let Some(last) = page.last() else { break };
        after = last["seq"].as_i64().expect("seq");
        stored.extend(page);
    }
    let mut by_client: HashMap<&str, Vec<i64>> = HashMap::new();
    for m in &stored {
        by_client
            .entry(m["client_id"].as_str().expect("cid"))
            .or_default()
            .push(m["seq"].as_i64().expect("seq"));
    }
    for (cid, seq) in &acked {
        assert_eq!(
            by_client.get(cid.as_str()),
            Some(&vec![*seq]),
            "acked {cid} stored exactly once with its seq"
        );
    }
    let seqs: Vec<i64> = stored.iter().filter_map(|m| m["seq"].as_i64()).collect();
    assert_eq!(
        seqs,
        (1..=stored.len() as i64).collect::<Vec<_>>(),
        "no gaps, no duplicates"
    );
    assert!(stored.len() <= sent, "nothing invented");
}
