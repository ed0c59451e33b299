//! A WebSocket test client speaking Mescon's realtime protocol.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

type Stream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One device.
pub struct WsClient {
    stream: Stream,
    /// Frames read while waiting for another type, kept in order for later `recv_type` calls.
    backlog: Vec<Value>,
}

/// How a socket ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// A close frame with this code.
    Closed(u16),
    /// The connection dropped without a close frame.
    Dropped,
}

impl WsClient {
    /// Opens the socket without authenticating.
    pub async fn open(base: &str) -> WsClient {
        let url = format!("{}/api/ws", base.replacen("http", "ws", 1));
        let (stream, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket connects");
        WsClient {
            stream,
            backlog: Vec::new(),
        }
    }

    /// Opens, authenticates, and waits for `ready`.
    pub async fn connect(base: &str, token: &str) -> WsClient {
        let mut ws = WsClient::open(base).await;
        ws.send(json!({"type": "auth", "token": token})).await;
        let ready = ws.recv_type("ready").await;
        assert!(ready["user_id"].is_string(), "{ready}");
        ws
    }

    /// Sends a JSON frame.
    pub async fn send(&mut self, v: Value) {
        self.stream
            .send(Message::text(v.to_string()))
            .await
            .expect("send frame");
    }

    /// Sends raw text.
    pub async fn send_raw(&mut self, m: Message) {
        self.stream.send(m).await.expect("send frame");
    }

    /// The next JSON frame (from the backlog first), within 15 s.
    pub async fn recv(&mut self) -> Value {
        if !self.backlog.is_empty() {
            return self.backlog.remove(0);
        }
        self.read()
            .await
            .unwrap_or_else(|e| panic!("socket ended while a frame was expected: {e:?}"))
    }

    async fn read(&mut self) -> Result<Value, Ended> {
        loop {
            let next = tokio::time::timeout(Duration::from_secs(15), self.stream.next())
                .await
                .expect("a frame within 15 s");
            match next {
                Some(Ok(Message::Text(t))) => {
                    return Ok(serde_json::from_str(&t).expect("frames are JSON"));
                }
                Some(Ok(Message::Close(frame))) => {
                    return Err(Ended::Closed(frame.map_or(1005, |f| u16::from(f.code))));
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Err(Ended::Dropped),
            }
        }
    }

    /// The next frame of type `ty`, keeping other frames for later.
    pub async fn recv_type(&mut self, ty: &str) -> Value {
        if let Some(i) = self.backlog.iter().position(|v| v["type"] == ty) {
            return self.backlog.remove(i);
        }
        loop {
            let v = self
                .read()
                .await
                .unwrap_or_else(|e| panic!("socket ended while waiting for {ty}: {e:?}"));
            if v["type"] == ty {
                return v;
            }
            self.backlog.push(v);
        }
    }

    /// The next frame for which `want` holds, keeping other frames for later.
    pub async fn recv_where(&mut self, want: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.backlog.iter().position(&want) {
            return self.backlog.remove(i);
        }
        loop {
            let v = self
                .read()
                .await
                .unwrap_or_else(|e| panic!("socket ended while waiting: {e:?}"));
            if want(&v) {
                return v;
            }
            self.backlog.push(v);
        }
    }

    /// Splits into a sender and a raw frame stream (for tests that read and write concurrently).
    pub fn split(
        self,
    ) -> (
        futures_util::stream::SplitSink<Stream, Message>,
        futures_util::stream::SplitStream<Stream>,
    ) {
        self.stream.split()
    }

    /// Asserts that no frame of type `ty` arrives within `within` (other frames are kept).
    pub async fn expect_no(&mut self, ty: &str, within: Duration) {
        assert!(
            !self.backlog.iter().any(|v| v["type"] == ty),
            "unexpected {ty} in backlog: {:?}",
            self.backlog
        );
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let Ok(next) = tokio::time::timeout_at(deadline, self.stream.next()).await else {
                return;
            };
            match next {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(&t).expect("json");
                    assert_ne!(v["type"], ty, "unexpected frame {v}");
                    self.backlog.push(v);
                }
                Some(Ok(_)) => {}
                _ => return,
            }
        }
    }

    /// Reads until the socket ends and says how.
    pub async fn ended(&mut self) -> Ended {
        loop {
            match self.read().await {
                Ok(v) => self.backlog.push(v),
                Err(e) => return e,
            }
        }
    }

    /// Closes politely.
    pub async fn close(mut self) {
        let _ = self
            .stream
            .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
                code: CloseCode::Normal,
                reason: "bye".into(),
            }))
            .await;
    }
}
