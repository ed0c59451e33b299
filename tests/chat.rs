//! Realtime chat over real WebSockets and HTTP, on SQLite and PostgreSQL: ordering under concurrency,
//! idempotency, sync after reconnect, multi-device fan-out, receipts, unread counts, presence, typing,
//! authorization, and the protocol's handling of bad frames.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use axum::http::StatusCode;
use common::ws::{Ended, WsClient};
use common::{Backend, TestServer, assert_error, phone};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

on_both_backends!(
    concurrent_senders_get_gapless_unique_seqs,
    resends_are_idempotent,
    sync_replays_exactly_what_was_missed,
    every_device_gets_every_message,
    receipts_and_unread_counts,
    rest_history_paging,
    strangers_and_blocked_users_are_refused,
    bad_frames_get_error_frames,
    presence_and_typing_reach_related_users_only,
    logout_closes_the_sessions_sockets,
    bodies_are_encrypted_at_rest,
);

async fn two_users(srv: &TestServer) -> (common::Session, common::Session) {
    let a = srv.login(&phone(1)).await;
    let b = srv.login(&phone(2)).await;
    (a, b)
}

async fn concurrent_senders_get_gapless_unique_seqs(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let (a, b) = two_users(&srv).await;
    const PER_DEVICE: usize = 250;
    let mut tasks = Vec::new();
    for (n, (me, peer)) in [(&a, &b), (&a, &b), (&b, &a), (&b, &a)]
        .into_iter()
        .enumerate()
    {
        let mut ws = WsClient::connect(&srv.base, &me.access).await;
        let to = peer.user_id.clone();
        tasks.push(tokio::spawn(async move {
            // Fire everything first, then collect: the sends really overlap on the server.
            for i in 0..PER_DEVICE {
                ws.send(json!({"type": "message.send", "to": to, "client_id": format!("d{n}-{i}"), "body": format!("m {n} {i}")}))
                    .await;
            }
            let mut acks = Vec::new();
            while acks.len() < PER_DEVICE {
                let ack = ws.recv_type("message.ack").await;
                acks.push((ack["client_id"].as_str().expect("cid").to_string(), ack["message"]["seq"].as_i64().expect("seq")));
            }
            acks
        }));
    }
    let mut seqs = Vec::new();
    let mut client_ids = HashSet::new();
    for t in tasks {
        let acks = t.await.expect("device task");
        let device_seqs: Vec<i64> = acks.iter().map(|(_, s)| *s).collect();
        assert!(
            device_seqs.windows(2).all(|w| w[0] < w[1]),
            "one device's messages keep their order"
        );
        for (cid, seq) in acks {
            assert!(client_ids.insert(cid));
            seqs.push(seq);
        }
    }
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (1..=4 * PER_DEVICE as i64).collect::<Vec<_>>(),
        "seq is 1..=1000 without gaps or duplicates"
    );

    // The stored history says the same, page by page.
    let mut stored = Vec::new();
    let mut after = 0;
    loop {
        let (status, page) = srv
            .get(
                &format!(
                    "/api/conversations/with/{}/messages?after_seq={after}&limit=200",
                    b.user_id
                ),
                &a.access,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let page = page.as_array().expect("array").clone();
        if page.is_empty() {
            break;
        }
        after = page.last().and_then(|m| m["seq"].as_i64()).expect("seq");
        stored.extend(page);
    }
    assert_eq!(stored.len(), 4 * PER_DEVICE);
    let stored_seqs: Vec<i64> = stored.iter().filter_map(|m| m["seq"].as_i64()).collect();
    assert_eq!(stored_seqs, (1..=4 * PER_DEVICE as i64).collect::<Vec<_>>());
    srv.finish().await;
}

async fn resends_are_idempotent(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let (a, b) = two_users(&srv).await;
    let mut wa = WsClient::connect(&srv.base, &a.access).await;
    let mut wb = WsClient::connect(&srv.base, &b.access).await;
    let send =
        json!({"type": "message.send", "to": b.user_id, "client_id": "same-1", "body": "hello"});
    wa.send(send.clone()).await;
    let first = wa.recv_type("message.ack").await;
    // The ack was "lost": the client sends again with the same client_id.
    wa.send(send).await;
    let second = wa.recv_type("message.ack").await;
    assert_eq!(first["message"]["id"], second["message"]["id"]);
    assert_eq!(first["message"]["seq"], 1);
    assert_eq!(
        wb.recv_type("message.new").await["message"]["id"],
        first["message"]["id"]
    );
    wb.expect_no("message.new", Duration::from_millis(300))
        .await;

    let path = format!("/api/conversations/with/{}/messages", b.user_id);
    let body = json!({"client_id": "rest-1", "body": "over REST"});
    let (status, _, m1) = srv
        .call("POST", &path, Some(&a.access), Some(body.clone()))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _, m2) = srv.call("POST", &path, Some(&a.access), Some(body)).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the same client_id again is 200 with the same message"
    );
    assert_eq!(m1["id"], m2["id"]);
    assert_eq!(m1["seq"], 2);
    assert_eq!(
        wb.recv_type("message.new").await["message"]["client_id"],
        "rest-1"
    );
    srv.finish().await;
}

async fn sync_replays_exactly_what_was_missed(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let (a, b) = two_users(&srv).await;
    let c = srv.login(&phone(3)).await;
    let path = |to: &str| format!("/api/conversations/with/{to}/messages");
    for i in 0..5 {
        srv.call(
            "POST",
            &path(&b.user_id),
            Some(&a.access),
            Some(json!({"client_id": format!("a{i}"), "body": format!("a{i}")})),
        )
        .await;
    }
    srv.call(
        "POST",
        &path(&b.user_id),
        Some(&c.access),
        Some(json!({"client_id": "c0", "body": "from c"})),
    )
    .await;

    // A device that knows nothing gets everything, then sync.done.
    let mut wb = WsClient::connect(&srv.base, &b.access).await;
    wb.send(json!({"type": "sync", "after": {}})).await;
    let mut got: Vec<Value> = Vec::new();
    loop {
        let v = wb.recv().await;
        match v["type"].as_str() {
            Some("message.new") => got.push(v["message"].clone()),
            Some("sync.done") => break,
            _ => {}
        }
    }
    assert_eq!(got.len(), 6);
    let conv_a = got
        .iter()
        .find(|m| m["sender_id"] == a.user_id)
        .expect("from a")["conversation_id"]
        .clone();
    let conv_c = got
        .iter()
        .find(|m| m["sender_id"] == c.user_id)
        .expect("from c")["conversation_id"]
        .clone();
    wb.close().await;

    // Away again: A sends three more; the device asks only for what is newer than what it has.
    for i in 5..8 {
        srv.call(
            "POST",
            &path(&b.user_id),
            Some(&a.access),
            Some(json!({"client_id": format!("a{i}"), "body": format!("a{i}")})),
        )
        .await;
    }
    let mut wb = WsClient::connect(&srv.base, &b.access).await;
    let mut after = serde_json::Map::new();
    after.insert(conv_a.as_str().expect("id").into(), json!(5));
    after.insert(conv_c.as_str().expect("id").into(), json!(1));
    wb.send(json!({"type": "sync", "after": after})).await;
    let mut seqs = Vec::new();
    loop {
        let v = wb.recv().await;
        match v["type"].as_str() {
            Some("message.new") => {
                assert_eq!(v["message"]["conversation_id"], conv_a);
                seqs.push(v["message"]["seq"].as_i64().expect("seq"));
            }
            Some("sync.done") => break,
            _ => {}
        }
    }
    assert_eq!(seqs, [6, 7, 8], "exactly the missed messages, in order");

    // A sync names a conversation the device is not part of: nothing leaks.
    let mut wc = WsClient::connect(&srv.base, &c.access).await;
    let mut after = serde_json::Map::new();
    after.insert(conv_a.as_str().expect("id").into(), json!(0));
    after.insert(conv_c.as_str().expect("id").into(), json!(1));
    wc.send(json!({"type": "sync", "after": after})).await;
    let v = wc.recv_type("sync.done").await;
    assert_eq!(v["type"], "sync.done");
    wc.expect_no("message.new", Duration::from_millis(200))
        .await;
    srv.finish().await;
}

async fn every_device_gets_every_message(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let (a, b) = two_users(&srv).await;
    let mut a1 = WsClient::connect(&srv.base, &a.access).await;
    let mut a2 = WsClient::connect(&srv.base, &a.access).await;
    let mut b1 = WsClient::connect(&srv.base, &b.access).await;
    let mut b2 = WsClient::connect(&srv.base, &b.access).await;
    a1.send(
        json!({"type": "message.send", "to": b.user_id, "client_id": "x1", "body": "to all of b"}),
    )
    .await;
    let ack = a1.recv_type("message.ack").await;
    for ws in [&mut b1, &mut b2, &mut a2] {
        let new = ws.recv_type("message.new").await;
        assert_eq!(new["message"]["id"], ack["message"]["id"]);
        assert_eq!(new["message"]["body"], "to all of b");
    }
    a1.expect_no("message.new", Duration::from_millis(200))
        .await;
    // A second tab never evicts the first: both of B's devices still answer.
    for ws in [&mut b1, &mut b2] {
        ws.send(json!({"type": "ping"})).await;
        assert_eq!(ws.recv_type("pong").await["type"], "pong");
    }
    srv.finish().await;
}

async fn receipts_and_unread_counts(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let (a, b) = two_users(&srv).await;
    srv.call(
        "POST",
        "/api/contacts",
        Some(&b.access),
        Some(json!({"phone": a.phone, "name": "Alice"})),
    )
    .await;
    let mut wa = WsClient::connect(&srv.base, &a.access).await;
    // B is offline: no delivery receipt yet.
    for i in 0..3 {
        wa.send(json!({"type": "message.send", "to": b.user_id, "client_id": format!("r{i}"), "body": format!("hi {i}")}))
            .await;
        wa.recv_type("message.ack").await;
    }
    wa.expect_no("message.status", Duration::from_millis(200))
        .await;
    let (_, list) = srv.get("/api/conversations", &b.access).await;
    assert_eq!(list[0]["unread_count"], 3);
    assert_eq!(list[0]["peer"]["id"], a.user_id);
    assert_eq!(list[0]["peer"]["contact_name"], "Alice");
    assert_eq!(list[0]["last_message"]["body"], "hi 2");
    assert_eq!(
        srv.get("/api/conversations", &a.access).await.1[0]["unread_count"],
        0
    );

    // B comes online and syncs: delivered.
    let mut wb = WsClient::connect(&srv.base, &b.access).await;
    wb.send(json!({"type": "sync"})).await;
    wb.recv_type("sync.done").await;
    let status = wa.recv_type("message.status").await;
    assert_eq!(
        (status["status"].as_str(), status["up_to_seq"].as_i64()),
        (Some("delivered"), Some(3))
    );

    // Live message to an online device: delivered at once.
    wa.send(json!({"type": "message.send", "to": b.user_id, "client_id": "r3", "body": "live"}))
        .await;
    wa.recv_type("message.ack").await;
    let status = wa.recv_type("message.status").await;
    assert_eq!(
        (status["status"].as_str(), status["up_to_seq"].as_i64()),
        (Some("delivered"), Some(4))
    );

    wb.send(json!({"type": "message.read", "peer": a.user_id, "up_to_seq": 2}))
        .await;
    let status = wa.recv_type("message.status").await;
    assert_eq!(
        (status["status"].as_str(), status["up_to_seq"].as_i64()),
        (Some("read"), Some(2))
    );
    let mine = wb.recv_type("message.status").await;
    assert_eq!(
        mine["status"], "read",
        "the reader's devices learn it too (badges)"
    );
    let (_, list) = srv.get("/api/conversations", &b.access).await;
    assert_eq!(list[0]["unread_count"], 2);

    let (status, _, _) = srv
        .call(
            "POST",
            &format!("/api/conversations/with/{}/read", a.user_id),
            Some(&b.access),
            Some(json!({"up_to_seq": 4})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(wa.recv_type("message.status").await["up_to_seq"], 4);
    let (_, list) = srv.get("/api/conversations", &b.access).await;
    assert_eq!(list[0]["unread_count"], 0);
    let (_, history) = srv
        .get(
            &format!("/api/conversations/with/{}/messages", b.user_id),
            &a.access,
        )
        .await;
    for m in history.as_array().expect("array") {
        assert!(
            m["delivered_at"].is_string() && m["read_at"].is_string(),
            "{m}"
        );
    }
    srv.finish().await;
}

async fn rest_history_paging(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let (a, b) = two_users(&srv).await;
    let path = format!("/api/conversations/with/{}/messages", b.user_id);
    assert_eq!(
        srv.get(&path, &a.access).await.1,
        json!([]),
        "never talked: empty"
    );
    for i in 0..30 {
        let (status, _, m) = srv
            .call(
                "POST",
                &path,
                Some(&a.access),
                Some(json!({"client_id": format!("p{i}"), "body": format!("n{i}")})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{m}");
    }
    let seqs = |v: &Value| {
        v.as_array()
            .expect("array")
            .iter()
            .filter_map(|m| m["seq"].as_i64())
            .collect::<Vec<_>>()
    };
    let (_, latest) = srv.get(&format!("{path}?limit=10"), &a.access).await;
    assert_eq!(seqs(&latest), (21..=30).collect::<Vec<_>>());
    let (_, older) = srv
        .get(&format!("{path}?before_seq=21&limit=10"), &a.access)
        .await;
    assert_eq!(seqs(&older), (11..=20).collect::<Vec<_>>());
    let (_, newer) = srv.get(&format!("{path}?after_seq=25"), &a.access).await;
    assert_eq!(seqs(&newer), (26..=30).collect::<Vec<_>>());
    let peer_view = srv
        .get(
            &format!("/api/conversations/with/{}/messages?limit=1", a.user_id),
            &b.access,
        )
        .await
        .1;
    assert_eq!(peer_view[0]["body"], "n29");
    assert_eq!(peer_view[0]["sender_id"], a.user_id);
    assert_eq!(peer_view[0]["recipient_id"], b.user_id);
    for bad in ["?limit=0", "?limit=201", "?limit=abc"] {
        let (status, _, body) = srv
            .call("GET", &format!("{path}{bad}"), Some(&a.access), None)
            .await;
        assert!(status.is_client_error(), "{bad}: {status}");
        assert!(body["error"]["code"].is_string(), "{bad}: {body}");
    }
    for body in [
        json!({"client_id": "e", "body": ""}),
        json!({"client_id": "", "body": "x"}),
        json!({"client_id": "l", "body": "x".repeat(4097)}),
    ] {
        let (status, _, err) = srv.call("POST", &path, Some(&a.access), Some(body)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_error(&err, "invalid_input");
    }
    let (status, _, _) = srv
        .call(
            "POST",
            &path,
            Some(&a.access),
            Some(json!({"client_id": "max", "body": "é".repeat(4096)})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "4096 characters, not bytes");
    srv.finish().await;
}

async fn strangers_and_blocked_users_are_refused(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let (a, b) = two_users(&srv).await;
    let c = srv.login(&phone(3)).await;
    let to_b = format!("/api/conversations/with/{}/messages", b.user_id);
    srv.call(
        "POST",
        &to_b,
        Some(&a.access),
        Some(json!({"client_id": "s1", "body": "secret"})),
    )
    .await;
    // C has no conversation with B: C's view of "with B" is empty, never A's messages.
    assert_eq!(srv.get(&to_b, &c.access).await.1, json!([]));
    let (_, list) = srv.get("/api/conversations", &c.access).await;
    assert_eq!(list, json!([]));
    // Unknown users and oneself.
    let (status, _, _) = srv
        .call(
            "POST",
            "/api/conversations/with/nobody/messages",
            Some(&a.access),
            Some(json!({"client_id": "x", "body": "x"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = srv
        .call(
            "POST",
            &format!("/api/conversations/with/{}/messages", a.user_id),
            Some(&a.access),
            Some(json!({"client_id": "me", "body": "x"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    // B blocks A: A can no longer send, over REST or the socket.
    srv.call(
        "PUT",
        &format!("/api/blocks/{}", a.user_id),
        Some(&b.access),
        None,
    )
    .await;
    let (status, _, body) = srv
        .call(
            "POST",
            &to_b,
            Some(&a.access),
            Some(json!({"client_id": "s2", "body": "hello?"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_error(&body, "forbidden");
    let mut wa = WsClient::connect(&srv.base, &a.access).await;
    wa.send(json!({"type": "message.send", "to": b.user_id, "client_id": "s3", "body": "hello?"}))
        .await;
    let err = wa.recv_type("error").await;
    assert_eq!(
        (err["code"].as_str(), err["client_id"].as_str()),
        (Some("forbidden"), Some("s3"))
    );
    wa.send(json!({"type": "typing", "to": b.user_id, "active": true}))
        .await;
    assert_eq!(wa.recv_type("error").await["code"], "not_found");
    // Nor can B message A while blocking A.
    let (status, _, _) = srv
        .call(
            "POST",
            &format!("/api/conversations/with/{}/messages", a.user_id),
            Some(&b.access),
            Some(json!({"client_id": "b1", "body": "x"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, history) = srv.get(&to_b, &a.access).await;
    assert_eq!(
        history.as_array().map(Vec::len),
        Some(1),
        "nothing was stored"
    );
    srv.finish().await;
}

async fn bad_frames_get_error_frames(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let (a, _) = two_users(&srv).await;
    let mut ws = WsClient::connect(&srv.base, &a.access).await;
    let cases: Vec<(Message, &str)> = vec![
        (Message::text("not json"), "invalid_input"),
        (Message::text("[1,2]"), "invalid_input"),
        (Message::text(r#"{"no":"type"}"#), "invalid_input"),
        (Message::text(r#"{"type":"warp.drive"}"#), "unknown_type"),
        (
            Message::text(r#"{"type":"message.send","to":"x"}"#),
            "invalid_input",
        ),
        (
            Message::text(r#"{"type":"message.read","peer":"x","up_to_seq":"ten"}"#),
            "invalid_input",
        ),
        (Message::binary(vec![1u8, 2, 3]), "invalid_input"),
        (
            Message::text(r#"{"type":"message.read","peer":"nobody","up_to_seq":1}"#),
            "not_found",
        ),
    ];
    for (frame, code) in cases {
        ws.send_raw(frame).await;
        let err = ws.recv_type("error").await;
        assert_eq!(err["code"], code, "{err}");
        assert!(err["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    ws.send(json!({"type": "ping"})).await;
    assert_eq!(
        ws.recv_type("pong").await["type"],
        "pong",
        "still connected after bad frames"
    );

    // Typing is rate limited per connection.
    let b = srv.login(&phone(2)).await;
    srv.call(
        "POST",
        "/api/contacts",
        Some(&a.access),
        Some(json!({"phone": b.phone, "name": "B"})),
    )
    .await;
    for _ in 0..20 {
        ws.send(json!({"type": "typing", "to": b.user_id, "active": true}))
            .await;
    }
    assert_eq!(ws.recv_type("error").await["code"], "rate_limited");

    // Oversized frames close the socket with 1009.
    ws.send_raw(Message::text("x".repeat(70 * 1024))).await;
    assert_eq!(ws.ended().await, Ended::Closed(1009));

    // A bad token: error frame, then close 4401.
    let mut bad = WsClient::open(&srv.base).await;
    bad.send(json!({"type": "auth", "token": "nope"})).await;
    assert_eq!(bad.recv_type("error").await["code"], "unauthorized");
    assert_eq!(bad.ended().await, Ended::Closed(4401));
    // Anything but auth first: the same.
    let mut early = WsClient::open(&srv.base).await;
    early.send(json!({"type": "ping"})).await;
    assert_eq!(early.recv_type("error").await["code"], "unauthorized");
    assert_eq!(early.ended().await, Ended::Closed(4401));

    // A foreign Origin is refused before the upgrade.
    let res = srv
        .http
        .get(srv.url("/api/ws"))
        .header("origin", "https://evil.example")
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .expect("send");
    assert_eq!(res.status().as_u16(), 403);
    let res = srv
        .http
        .get(srv.url("/api/ws"))
        .header("origin", srv.base.clone())
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .expect("send");
    assert_eq!(res.status().as_u16(), 101, "same origin is fine");
    srv.finish().await;
}

async fn presence_and_typing_reach_related_users_only(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let (a, b) = two_users(&srv).await;
    let stranger = srv.login(&phone(3)).await;
    // B keeps A's number: A's presence goes to B. A keeps nobody.
    srv.call(
        "POST",
        "/api/contacts",
        Some(&a.access),
        Some(json!({"phone": b.phone, "name": "B"})),
    )
    .await;
    let mut wb = WsClient::connect(&srv.base, &b.access).await;
    let p = wb.recv_type("presence").await;
    assert_eq!(
        (p["user_id"].as_str(), p["online"].as_bool()),
        (Some(a.user_id.as_str()), Some(false)),
        "snapshot"
    );
    let mut ws = WsClient::connect(&srv.base, &stranger.access).await;
    let mut wa = WsClient::connect(&srv.base, &a.access).await;
    let p = wb.recv_type("presence").await;
    assert_eq!(
        (p["user_id"].as_str(), p["online"].as_bool()),
        (Some(a.user_id.as_str()), Some(true)),
        "came online"
    );

    wa.send(json!({"type": "typing", "to": b.user_id, "active": true}))
        .await;
    let t = wb.recv_type("typing").await;
    assert_eq!(
        (t["from"].as_str(), t["active"].as_bool()),
        (Some(a.user_id.as_str()), Some(true))
    );

    wa.close().await;
    let p = wb.recv_type("presence").await;
    assert_eq!(p["online"], false);
    assert!(p["last_seen"].is_string(), "{p}");
    ws.expect_no("presence", Duration::from_millis(300)).await;

    // A device connecting later learns the current state at once.
    let mut wb2 = WsClient::connect(&srv.base, &b.access).await;
    let p = wb2.recv_type("presence").await;
    assert_eq!(
        (p["user_id"].as_str(), p["online"].as_bool()),
        (Some(a.user_id.as_str()), Some(false))
    );

    // Saving a number while both are online shows presence at once, not at the next reconnect.
    srv.call(
        "POST",
        "/api/contacts",
        Some(&b.access),
        Some(json!({"phone": stranger.phone, "name": "S"})),
    )
    .await;
    let p = ws.recv_type("presence").await;
    assert_eq!(
        (p["user_id"].as_str(), p["online"].as_bool()),
        (Some(b.user_id.as_str()), Some(true))
    );

    // Blocking hides presence both ways.
    srv.call(
        "PUT",
        &format!("/api/blocks/{}", a.user_id),
        Some(&b.access),
        None,
    )
    .await;
    let _wa = WsClient::connect(&srv.base, &a.access).await;
    wb.expect_no("presence", Duration::from_millis(300)).await;
    srv.finish().await;
}

async fn logout_closes_the_sessions_sockets(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let (a, _) = two_users(&srv).await;
    let mut ws = WsClient::connect(&srv.base, &a.access).await;
    srv.call(
        "POST",
        "/api/auth/logout",
        None,
        Some(json!({"refresh_token": a.refresh})),
    )
    .await;
    assert_eq!(ws.ended().await, Ended::Closed(4408));
    srv.finish().await;
}

async fn bodies_are_encrypted_at_rest(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let (a, b) = two_users(&srv).await;
    let secret = "the eagle lands at midnight";
    srv.call(
        "POST",
        &format!("/api/conversations/with/{}/messages", b.user_id),
        Some(&a.access),
        Some(json!({"client_id": "enc", "body": secret})),
    )
    .await;
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&srv.db_url).await.expect("db");
    let rows: Vec<(Vec<u8>,)> = sqlx::query_as("SELECT body FROM messages")
        .fetch_all(&pool)
        .await
        .expect("rows");
    assert_eq!(rows.len(), 1);
    let stored = &rows[0].0;
    assert!(
        !stored.windows(6).any(|w| w == b"eagle "),
        "no plaintext in the database"
    );
    assert!(
        stored.len() >= secret.len() + 12 + 16,
        "nonce and tag are stored with it"
    );
    // Moving the ciphertext to another message's row must not decrypt: the AAD binds it to its row.
    srv.call(
        "POST",
        &format!("/api/conversations/with/{}/messages", b.user_id),
        Some(&a.access),
        Some(json!({"client_id": "enc2", "body": "harmless"})),
    )
    .await;
    sqlx::query("UPDATE messages SET body = $1 WHERE client_id = 'enc2'")
        .bind(stored.clone())
        .execute(&pool)
        .await
        .expect("swap");
    let (status, _, body) = srv
        .call(
            "GET",
            &format!("/api/conversations/with/{}/messages", b.user_id),
            Some(&a.access),
            None,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "a swapped ciphertext is detected"
    );
    assert_error(&body, "internal");
    assert!(
        !body.to_string().contains("crypto"),
        "no internals in the message: {body}"
    );
    pool.close().await;
    srv.finish().await;
}
