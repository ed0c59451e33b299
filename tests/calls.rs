//! Calls end to end: two users sign in through the real API, call each other over the WebSocket, and
//! exchange real DTLS/SRTP media through the SFU with `webrtc` client peers; plus every lifecycle path
//! (decline, cancel, timeout by the injected clock, busy, hangup, blocked, strangers) and history.

mod common;
#[path = "../media/tests/common/mod.rs"]
#[allow(clippy::all)]
mod peers;

use std::sync::Arc;
use std::time::Duration;

use common::ws::WsClient;
use common::{Backend, Session, TestServer, phone};
use futures_util::{SinkExt, StreamExt};
use peers::{Client, OPUS_PT, Publisher, VP8_PT};
use serde_json::{Value, json};
use tokio::sync::{Mutex, mpsc};
use tokio_tungstenite::tungstenite::Message;

on_both_backends!(
    decline_cancel_and_history,
    ring_timeout_is_a_missed_call,
    busy_blocked_and_strangers_are_refused,
    answered_call_without_media_fails_after_the_grace,
);

fn is(ty: &'static str) -> impl Fn(&Value) -> bool {
    move |v| v["type"] == ty
}

/// A placed and ringing call: (caller socket, callee socket, call id).
async fn ring(
    srv: &TestServer,
    a: &Session,
    b: &Session,
    kind: &str,
) -> (WsClient, WsClient, String) {
    let mut wa = WsClient::connect(&srv.base, &a.access).await;
    let mut wb = WsClient::connect(&srv.base, &b.access).await;
    wa.send(json!({"type": "call.invite", "to": b.user_id, "kind": kind}))
        .await;
    let created = wa.recv_where(is("call.created")).await;
    let id = created["call_id"].as_str().expect("call id").to_string();
    let incoming = wb.recv_where(is("call.incoming")).await;
    assert_eq!(
        (incoming["call_id"].as_str(), incoming["from"].as_str()),
        (Some(id.as_str()), Some(a.user_id.as_str()))
    );
    assert_eq!(incoming["kind"], kind);
    assert_eq!(
        wa.recv_where(is("call.ringing")).await["call_id"],
        id.as_str()
    );
    (wa, wb, id)
}

async fn history(srv: &TestServer, s: &Session) -> Vec<Value> {
    let (status, body) = srv.get("/api/calls", &s.access).await;
    assert_eq!(status.as_u16(), 200, "{body}");
    body.as_array().expect("array").clone()
}

async fn decline_cancel_and_history(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let a = srv.login(&phone(1)).await;
    let b = srv.login(&phone(2)).await;

    // Declined: the caller hears call.declined, both get call.ended(declined).
    let (mut wa, mut wb, id) = ring(&srv, &a, &b, "audio").await;
    let mut b2 = WsClient::connect(&srv.base, &b.access).await; // a second device of B rings too
    assert_eq!(
        b2.recv_where(is("call.incoming")).await["call_id"],
        id.as_str()
    );
    wb.send(json!({"type": "call.decline", "call_id": id}))
        .await;
    assert_eq!(
        wa.recv_where(is("call.declined")).await["call_id"],
        id.as_str()
    );
    for ws in [&mut wa, &mut wb, &mut b2] {
        let ended = ws.recv_where(is("call.ended")).await;
        assert_eq!(
            (ended["call_id"].as_str(), ended["reason"].as_str()),
            (Some(id.as_str()), Some("declined"))
        );
    }

    // Cancelled by the caller while ringing.
    wa.send(json!({"type": "call.invite", "to": b.user_id, "kind": "video"}))
        .await;
    let id2 = wa.recv_where(is("call.created")).await["call_id"]
        .as_str()
        .expect("id")
        .to_string();
    wb.recv_where(|v| v["type"] == "call.incoming" && v["call_id"] == id2.as_str())
        .await;
    wa.send(json!({"type": "call.hangup", "call_id": id2}))
        .await;
    let ended = wb
        .recv_where(|v| v["type"] == "call.ended" && v["call_id"] == id2.as_str())
        .await;
    assert_eq!(ended["reason"], "cancelled");

    // Answered on one device: the other stops ringing (call.accepted), then a hangup ends it.
    wa.send(json!({"type": "call.invite", "to": b.user_id, "kind": "audio"}))
        .await;
    let id3 = wa.recv_where(is("call.created")).await["call_id"]
        .as_str()
        .expect("id")
        .to_string();
    b2.recv_where(|v| v["type"] == "call.incoming" && v["call_id"] == id3.as_str())
        .await;
    wb.send(json!({"type": "call.accept", "call_id": id3}))
        .await;
    wa.recv_where(|v| v["type"] == "call.accepted" && v["call_id"] == id3.as_str())
        .await;
    b2.recv_where(|v| v["type"] == "call.accepted" && v["call_id"] == id3.as_str())
        .await;
    b2.send(json!({"type": "call.accept", "call_id": id3}))
        .await;
    assert_eq!(
        b2.recv_where(is("error")).await["code"],
        "conflict",
        "already answered elsewhere"
    );
    wb.send(json!({"type": "call.hangup", "call_id": id3}))
        .await;
    let ended = wa
        .recv_where(|v| v["type"] == "call.ended" && v["call_id"] == id3.as_str())
        .await;
    assert_eq!(ended["reason"], "hangup");

    let mine = history(&srv, &a).await;
    let theirs = history(&srv, &b).await;
    assert_eq!(mine.len(), 3);
    let row = |h: &[Value], id: &str| {
        h.iter()
            .find(|c| c["id"] == id)
            .cloned()
            .expect("call in history")
    };
    assert_eq!(row(&mine, &id)["status"], "declined");
    assert_eq!(row(&mine, &id)["direction"], "outgoing");
    assert_eq!(row(&theirs, &id)["direction"], "incoming");
    assert_eq!(row(&mine, &id2)["status"], "cancelled");
    assert_eq!(row(&mine, &id2)["kind"], "video");
    let answered = row(&theirs, &id3);
    assert_eq!(answered["status"], "answered");
    assert!(
        answered["answered_at"].is_string() && answered["ended_at"].is_string(),
        "{answered}"
    );
    assert_eq!(answered["peer"]["id"], a.user_id);
    assert_eq!(mine[0]["id"], id3.as_str(), "newest first");
    srv.finish().await;
}

async fn ring_timeout_is_a_missed_call(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let a = srv.login(&phone(1)).await;
    let b = srv.login(&phone(2)).await;
    let (mut wa, mut wb, id) = ring(&srv, &a, &b, "video").await;
    srv.clock.advance(Duration::from_secs(44));
    wa.expect_no("call.ended", Duration::from_millis(800)).await;
    srv.clock.advance(Duration::from_secs(2));
    for ws in [&mut wa, &mut wb] {
        let ended = ws.recv_where(is("call.ended")).await;
        assert_eq!(
            (ended["call_id"].as_str(), ended["reason"].as_str()),
            (Some(id.as_str()), Some("timeout"))
        );
    }
    assert_eq!(history(&srv, &b).await[0]["status"], "missed");
    srv.finish().await;
}

async fn busy_blocked_and_strangers_are_refused(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let a = srv.login(&phone(1)).await;
    let b = srv.login(&phone(2)).await;
    let c = srv.login(&phone(3)).await;
    let (mut wa, mut wb, id) = ring(&srv, &a, &b, "audio").await;
    wb.send(json!({"type": "call.accept", "call_id": id})).await;
    wa.recv_where(is("call.accepted")).await;

    // C calls B, who is in a call: busy.
    let mut wc = WsClient::connect(&srv.base, &c.access).await;
    wc.send(json!({"type": "call.invite", "to": b.user_id, "kind": "audio"}))
        .await;
    let busy = wc.recv_where(is("call.created")).await["call_id"].clone();
    let ended = wc.recv_where(is("call.ended")).await;
    assert_eq!(
        (&ended["call_id"], ended["reason"].as_str()),
        (&busy, Some("busy"))
    );
    wb.expect_no("call.incoming", Duration::from_millis(300))
        .await;

    // C is no member of A and B's call: signalling into it, or ending it, is refused.
    let offer = json!({"type": "sfu.signal", "call_id": id, "pc": "publish", "sdp": {"type": "offer", "sdp": "v=0"}});
    wc.send(offer).await;
    let err = wc.recv_where(is("error")).await;
    assert_eq!(
        (err["code"].as_str(), err["ref"].as_str()),
        (Some("not_found"), Some("sfu.signal"))
    );
    wc.send(json!({"type": "call.hangup", "call_id": id})).await;
    assert_eq!(wc.recv_where(is("error")).await["code"], "not_found");
    wa.expect_no("call.ended", Duration::from_millis(300)).await;

    // Bad invites.
    for bad in [
        json!({"type": "call.invite", "to": c.user_id, "kind": "hologram"}),
        json!({"type": "call.invite", "to": "nobody", "kind": "audio"}),
    ] {
        wc.send(bad).await;
        let err = wc.recv_where(is("error")).await;
        assert_eq!(err["ref"], "call.invite", "{err}");
    }
    wa.send(json!({"type": "call.hangup", "call_id": id})).await;
    wb.recv_where(is("call.ended")).await;

    // A blocked caller's call fails at once and never rings.
    srv.call(
        "PUT",
        &format!("/api/blocks/{}", c.user_id),
        Some(&b.access),
        None,
    )
    .await;
    wc.send(json!({"type": "call.invite", "to": b.user_id, "kind": "audio"}))
        .await;
    wc.recv_where(is("call.created")).await;
    assert_eq!(wc.recv_where(is("call.ended")).await["reason"], "failed");
    wb.expect_no("call.incoming", Duration::from_millis(300))
        .await;
    srv.finish().await;
}

async fn answered_call_without_media_fails_after_the_grace(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let a = srv.login(&phone(1)).await;
    let b = srv.login(&phone(2)).await;
    let (mut wa, mut wb, id) = ring(&srv, &a, &b, "audio").await;
    wb.send(json!({"type": "call.accept", "call_id": id})).await;
    wa.recv_where(is("call.accepted")).await;
    // Nobody ever brings media up (a device died right after answering): the call cannot hang forever.
    srv.clock.advance(Duration::from_secs(21));
    for ws in [&mut wa, &mut wb] {
        assert_eq!(ws.recv_where(is("call.ended")).await["reason"], "failed");
    }
    srv.finish().await;
}

/// One member's side of a call with media: its socket, driven by a background reader that answers
/// the SFU's subscribe offers with a receiving peer, and a publishing peer.
struct Side {
    out: Arc<Mutex<futures_util::stream::SplitSink<WsStream, Message>>>,
    frames: mpsc::UnboundedReceiver<Value>,
    publish_answers: mpsc::UnboundedReceiver<String>,
    receiver: Arc<Client>,
}

type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

impl Side {
    async fn new(ws: WsClient) -> Side {
        Side::attach(ws, Arc::new(Client::new(false).await))
    }

    /// A side on a (new) socket whose subscribe offers go to `receiver`: after a reconnect the
    /// browser keeps its peer connections and only the socket is new.
    fn attach(ws: WsClient, receiver: Arc<Client>) -> Side {
        let (sink, mut stream) = ws.split();
        let out = Arc::new(Mutex::new(sink));
        let (frames_tx, frames) = mpsc::unbounded_channel();
        let (answers_tx, publish_answers) = mpsc::unbounded_channel();
        let (reader_out, reader_client) = (out.clone(), receiver.clone());
        tokio::spawn(async move {
            while let Some(Ok(m)) = stream.next().await {
                let Message::Text(t) = m else { continue };
                let v: Value = serde_json::from_str(&t).expect("json frame");
                if v["type"] == "sfu.signal"
                    && v["pc"] == "subscribe"
                    && v["sdp"]["type"] == "offer"
                {
                    let offer = v["sdp"]["sdp"].as_str().expect("sdp").to_string();
                    let Some(answer) = reader_client.try_answer(offer).await else {
                        break;
                    };
                    let frame = json!({"type": "sfu.signal", "call_id": v["call_id"], "pc": "subscribe",
                        "sdp": {"type": "answer", "sdp": answer}});
                    if reader_out
                        .lock()
                        .await
                        .send(Message::text(frame.to_string()))
                        .await
                        .is_err()
                    {
                        break;
                    }
                } else if v["type"] == "sfu.signal"
                    && v["pc"] == "publish"
                    && v["sdp"]["type"] == "answer"
                {
                    let _ = answers_tx.send(v["sdp"]["sdp"].as_str().expect("sdp").to_string());
                } else {
                    let _ = frames_tx.send(v);
                }
            }
        });
        Side {
            out,
            frames,
            publish_answers,
            receiver,
        }
    }

    async fn send(&self, v: Value) {
        self.out
            .lock()
            .await
            .send(Message::text(v.to_string()))
            .await
            .expect("send");
    }

    /// Closes the socket (the reader task ends with it).
    async fn close(&self) {
        let _ = self.out.lock().await.close().await;
    }

    /// No `call.ended` has arrived (other frames may have).
    fn assert_call_goes_on(&mut self) {
        while let Ok(v) = self.frames.try_recv() {
            assert_ne!(v["type"], "call.ended", "the call ended: {v}");
        }
    }

    /// The next frame matching `want`, within 15 s.
    async fn next_frame_where(&mut self, want: impl Fn(&Value) -> bool) -> Value {
        tokio::time::timeout(Duration::from_secs(15), async {
            loop {
                let v = self.frames.recv().await.expect("socket open");
                if want(&v) {
                    return v;
                }
            }
        })
        .await
        .expect("the frame came within 15 s")
    }

    async fn next_frame(&mut self, ty: &str) -> Value {
        loop {
            let v = tokio::time::timeout(Duration::from_secs(15), self.frames.recv())
                .await
                .unwrap_or_else(|_| panic!("no {ty} within 15 s"))
                .expect("socket open");
            if v["type"] == ty {
                return v;
            }
        }
    }

    /// Publishes an audio and a video track through the call's signalling and waits until connected.
    async fn publish(&mut self, call_id: &str) -> Publisher {
        let (out, answers) = (self.out.clone(), &mut self.publish_answers);
        Publisher::negotiate(false, |offer| {
            exchange_publish(out, answers, call_id, offer, false)
        })
        .await
    }
}

/// Sends a publish offer through the call's signalling and waits for the SFU's answer.
async fn exchange_publish(
    out: Arc<Mutex<futures_util::stream::SplitSink<WsStream, Message>>>,
    answers: &mut mpsc::UnboundedReceiver<String>,
    call_id: &str,
    offer: String,
    fresh: bool,
) -> String {
    let mut frame = json!({"type": "sfu.signal", "call_id": call_id, "pc": "publish", "sdp": {"type": "offer", "sdp": offer}});
    if fresh {
        // The first offer of new peer connections after the server asked for a reset.
        frame["reset"] = json!(true);
    }
    out.lock()
        .await
        .send(Message::text(frame.to_string()))
        .await
        .expect("send offer");
    tokio::time::timeout(Duration::from_secs(15), answers.recv())
        .await
        .expect("publish answer in time")
        .expect("socket open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_call_and_exchange_media_through_the_sfu() {
    let srv = TestServer::start(Backend::Sqlite).await;
    let a = srv.login(&phone(1)).await;
    let b = srv.login(&phone(2)).await;
    let (wa, wb, id) = ring(&srv, &a, &b, "video").await;
    let (mut sa, mut sb) = (Side::new(wa).await, Side::new(wb).await);
    sb.send(json!({"type": "call.accept", "call_id": id})).await;
    sa.next_frame("call.accepted").await;

    // The publish answer lists the SFU's candidates itself (ICE-lite): no server trickle needed.
    let pa = sa.publish(&id).await;
    let pb = sb.publish(&id).await;
    assert!(
        pa.answer.contains("a=ice-lite") || pa.answer.contains("a=candidate"),
        "{}",
        pa.answer
    );
    tokio::join!(
        pa.send(120, 30, Duration::from_millis(15)),
        pb.send(120, 30, Duration::from_millis(15))
    );
    tokio::time::sleep(Duration::from_millis(500)).await;

    for (side, other, who) in [(&sa, &b, "A"), (&sb, &a, "B")] {
        let seen = side.receiver.seen();
        let video = seen
            .get(&format!("{}:video", other.user_id))
            .unwrap_or_else(|| {
                panic!(
                    "{who} receives the other's video; got {:?}",
                    seen.keys().collect::<Vec<_>>()
                )
            });
        let audio = seen
            .get(&format!("{}:audio", other.user_id))
            .unwrap_or_else(|| panic!("{who} receives audio"));
        assert!(
            video.len() >= 60 && audio.len() >= 60,
            "{who}: {} video, {} audio packets",
            video.len(),
            audio.len()
        );
        assert!(video[0].keyframe, "{who}: video starts with a keyframe");
        assert!(video.iter().all(|p| p.pt == VP8_PT) && audio.iter().all(|p| p.pt == OPUS_PT));
        peers::assert_continuous("video", video);
    }

    // The size A shows B's video at: a layer 0-2 for the subscribe connection, nothing else.
    sa.send(json!({"type": "sfu.signal", "call_id": id, "pc": "subscribe", "max_layer": 0}))
        .await;
    for bad in [
        json!({"type": "sfu.signal", "call_id": id, "pc": "subscribe", "max_layer": 3}),
        json!({"type": "sfu.signal", "call_id": id, "pc": "publish", "max_layer": 1}),
        json!({"type": "sfu.signal", "call_id": id, "pc": "subscribe", "max_layer": "big"}),
    ] {
        sa.send(bad.clone()).await;
        let e = sa.next_frame("error").await;
        assert_eq!(
            (e["code"].as_str(), e["ref"].as_str()),
            (Some("invalid_input"), Some("sfu.signal")),
            "{bad} -> {e}"
        );
    }

    sa.send(json!({"type": "call.hangup", "call_id": id})).await;
    assert_eq!(sb.next_frame("call.ended").await["reason"], "hangup");
    // The room is gone with the call.
    let stats = srv
        .running
        .as_ref()
        .and_then(|r| r.app.sfu.as_ref())
        .expect("sfu")
        .stats()
        .await;
    assert_eq!((stats.rooms, stats.participants), (0, 0), "{stats:?}");
    assert_eq!(history(&srv, &a).await[0]["status"], "answered");
    drop((pa, pb));
    srv.finish().await;
}

/// A calls B, B accepts, both publish, and some of A's media has flowed.
async fn call_with_media(
    srv: &TestServer,
) -> (Session, Session, String, Side, Side, Publisher, Publisher) {
    let a = srv.login(&phone(1)).await;
    let b = srv.login(&phone(2)).await;
    let (wa, wb, id) = ring(srv, &a, &b, "video").await;
    let (mut sa, mut sb) = (Side::new(wa).await, Side::new(wb).await);
    sb.send(json!({"type": "call.accept", "call_id": id})).await;
    sa.next_frame("call.accepted").await;
    let pa = sa.publish(&id).await;
    let pb = sb.publish(&id).await;
    pa.send(40, 20, Duration::from_millis(15)).await;
    (a, b, id, sa, sb, pa, pb)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_survives_a_websocket_reconnect() {
    let srv = TestServer::start(Backend::Sqlite).await;
    let (a, _b, id, sa, mut sb, pa, _pb) = call_with_media(&srv).await;

    // A's socket drops (a network switch); the call goes on, and A comes back on a new socket of
    // the same session, restarting ICE on both of its connections as the browser does.
    sa.close().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let receiver = sa.receiver.clone();
    let mut sa = Side::attach(WsClient::connect(&srv.base, &a.access).await, receiver);
    sa.send(json!({"type": "sfu.signal", "call_id": id, "pc": "subscribe", "restart": true}))
        .await;
    pa.client.pc.restart_ice().await.expect("restart");
    let offer = pa.client.offer().await;
    let answer = exchange_publish(sa.out.clone(), &mut sa.publish_answers, &id, offer, false).await;
    pa.client.apply_answer(answer).await;

    let key = format!("{}:video", a.user_id);
    let before = sb.receiver.seen().get(&key).map_or(0, Vec::len);
    pa.send(100, 20, Duration::from_millis(15)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = sb.receiver.seen().get(&key).map_or(0, Vec::len);
    assert!(
        after >= before + 60,
        "B still receives A's video after A reconnected: {before} -> {after}"
    );
    sb.assert_call_goes_on();
    srv.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_media_fails_is_reset_and_rejoins_with_new_connections() {
    let srv = TestServer::start(Backend::Sqlite).await;
    let (a, b, id, mut sa, mut sb, pa, pb) = call_with_media(&srv).await;

    // A's connections die without a word (a crashed tab's network, a dead link): the SFU's ICE
    // consent checks go unanswered until it gives up on them.
    pa.client.pc.close().await.expect("close");
    sa.receiver.pc.close().await.expect("close");
    let reset = tokio::time::timeout(Duration::from_secs(40), async {
        loop {
            let v = sa.frames.recv().await.expect("socket open");
            if v["type"] == "sfu.signal" && v["reset"] == true {
                return v;
            }
            assert_ne!(v["type"], "call.ended", "the call ended instead: {v}");
        }
    })
    .await
    .expect("the SFU tells A to start over");
    assert_eq!(reset["call_id"], id.as_str());

    // A's socket drops too, and comes back; its browser missed the reset. Whatever it signals
    // first (an ICE restart here) is answered with the reset again.
    sa.close().await;
    let mut sa = Side::new(WsClient::connect(&srv.base, &a.access).await).await;
    sa.send(json!({"type": "sfu.signal", "call_id": id, "pc": "subscribe", "restart": true}))
        .await;
    let again = sa.next_frame_where(|v| v["type"] == "sfu.signal" && v["reset"] == true);
    again.await;

    // A starts over with new peer connections on the same call, as the browser does: their
    // first publish offer says so.
    let (out, answers) = (sa.out.clone(), &mut sa.publish_answers);
    let pa = Publisher::negotiate(false, |offer| {
        exchange_publish(out, answers, &id, offer, true)
    })
    .await;
    let key = format!("{}:video", a.user_id);
    let before = sb.receiver.seen().get(&key).map_or(0, Vec::len);
    tokio::join!(
        pa.send(100, 20, Duration::from_millis(15)),
        pb.send(100, 20, Duration::from_millis(15))
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = sb.receiver.seen().get(&key).map_or(0, Vec::len);
    assert!(
        after >= before + 60,
        "B receives A's video from A's new connection: {before} -> {after}"
    );
    let to_a = sa.receiver.seen();
    let from_b = to_a
        .get(&format!("{}:video", b.user_id))
        .map_or(0, Vec::len);
    assert!(
        from_b >= 60,
        "A's new subscribe connection gets B's video: {from_b}"
    );
    sb.assert_call_goes_on();
    srv.finish().await;
}
