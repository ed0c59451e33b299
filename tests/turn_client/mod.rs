//! A small TURN client for the tests, speaking raw STUN over UDP or TCP so that tests can assert the
//! exact answers (401, 438, 403, 486...) that a full client library would hide behind retries.

#![allow(dead_code)]

pub mod coturn;

use std::net::SocketAddr;
use std::time::Duration;

use mescon::turn::policy::PeerRule;
use stun::agent::TransactionId;
use stun::attributes::{ATTR_NONCE, ATTR_REALM, ATTR_USERNAME};
use stun::error_code::ErrorCodeAttribute;
use stun::fingerprint::FINGERPRINT;
use stun::integrity::MessageIntegrity;
use stun::message::{
    CLASS_ERROR_RESPONSE, CLASS_INDICATION, CLASS_REQUEST, CLASS_SUCCESS_RESPONSE, Getter,
    METHOD_ALLOCATE, METHOD_CHANNEL_BIND, METHOD_CREATE_PERMISSION, METHOD_DATA, METHOD_REFRESH,
    METHOD_SEND, Message, MessageType, Method, Setter,
};
use stun::textattrs::TextAttribute;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use turn::proto::channum::ChannelNumber;
use turn::proto::data::Data;
use turn::proto::lifetime::Lifetime;
use turn::proto::peeraddr::PeerAddress;
use turn::proto::relayaddr::RelayedAddress;
use turn::proto::reqtrans::RequestedTransport;
use turn::proto::{PROTO_UDP, chandata::ChannelData};

const WAIT: Duration = Duration::from_secs(5);

enum Link {
    Udp(UdpSocket, SocketAddr),
    Tcp(TcpStream),
}

/// What came back from the relay.
#[derive(Debug, PartialEq, Eq)]
pub enum Relayed {
    /// A Data indication.
    Data(SocketAddr, Vec<u8>),
    /// ChannelData on a channel.
    Channel(u16, Vec<u8>),
}

/// One TURN client connection (one 5-tuple).
pub struct TurnClient {
    link: Link,
    pub username: String,
    pub password: String,
    pub realm: Option<String>,
    pub nonce: Option<String>,
    /// Data that arrived while waiting for a response.
    pending: Vec<Vec<u8>>,
}

impl TurnClient {
    /// A client over UDP from an ephemeral loopback port.
    pub async fn udp(server: SocketAddr, username: &str, password: &str) -> TurnClient {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind client");
        TurnClient::new(Link::Udp(socket, server), username, password)
    }

    /// A client over a TCP connection.
    pub async fn tcp(server: SocketAddr, username: &str, password: &str) -> TurnClient {
        let stream = TcpStream::connect(server).await.expect("connect TURN/TCP");
        stream.set_nodelay(true).expect("nodelay");
        TurnClient::new(Link::Tcp(stream), username, password)
    }

    fn new(link: Link, username: &str, password: &str) -> TurnClient {
        TurnClient {
            link,
            username: username.into(),
            password: password.into(),
            realm: None,
            nonce: None,
            pending: Vec::new(),
        }
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        match &mut self.link {
            Link::Udp(s, server) => {
                s.send_to(bytes, *server).await.expect("send");
            }
            Link::Tcp(s) => s.write_all(bytes).await.expect("write"),
        }
    }

    /// Next STUN message or ChannelData frame, or None after [`WAIT`].
    pub async fn recv_raw(&mut self) -> Option<Vec<u8>> {
        tokio::time::timeout(WAIT, async {
            match &mut self.link {
                Link::Udp(s, _) => {
                    let mut buf = vec![0u8; 65_536];
                    let (n, _) = s.recv_from(&mut buf).await.ok()?;
                    buf.truncate(n);
                    Some(buf)
                }
                Link::Tcp(s) => {
                    let mut head = [0u8; 4];
                    s.read_exact(&mut head).await.ok()?;
                    let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
                    let body = if head[0] >> 6 == 1 {
                        len.div_ceil(4) * 4
                    } else {
                        16 + len
                    };
                    let mut frame = head.to_vec();
                    frame.resize(4 + body, 0);
                    s.read_exact(&mut frame[4..]).await.ok()?;
                    Some(frame)
                }
            }
        })
        .await
        .ok()
        .flatten()
    }

    /// Sends a request and returns the response with the same transaction id.
    pub async fn transact(&mut self, m: &Message) -> Message {
        self.send_raw(&m.raw).await;
        loop {
            let raw = self.recv_raw().await.expect("a response within 5 s");
            let mut answer = Message::new();
            if answer.unmarshal_binary(&raw).is_ok() && answer.transaction_id == m.transaction_id {
                return answer;
            }
            self.pending.push(raw);
        }
    }

    /// Builds a request of `method`; with credentials once the server has sent realm and nonce.
    pub fn build(
        &self,
        method: Method,
        mut attrs: Vec<Box<dyn Setter>>,
        class_request: bool,
    ) -> Message {
        let class = if class_request {
            CLASS_REQUEST
        } else {
            CLASS_INDICATION
        };
        let mut setters: Vec<Box<dyn Setter>> = vec![
            Box::new(TransactionId::new()),
            Box::new(MessageType::new(method, class)),
        ];
        setters.append(&mut attrs);
        if let (true, Some(realm), Some(nonce)) = (class_request, &self.realm, &self.nonce) {
            setters.push(Box::new(TextAttribute::new(
                ATTR_USERNAME,
                self.username.clone(),
            )));
            setters.push(Box::new(TextAttribute::new(ATTR_REALM, realm.clone())));
            setters.push(Box::new(TextAttribute::new(ATTR_NONCE, nonce.clone())));
            setters.push(Box::new(MessageIntegrity::new_long_term_integrity(
                self.username.clone(),
                realm.clone(),
                self.password.clone(),
            )));
        }
        setters.push(Box::new(FINGERPRINT));
        let mut m = Message::new();
        m.build(&setters).expect("build request");
        m
    }

    /// Sends an authenticated request, learning realm and nonce from a 401/438 first as real
    /// clients do. Returns the final answer.
    pub async fn request(
        &mut self,
        method: Method,
        attrs: impl Fn() -> Vec<Box<dyn Setter>>,
    ) -> Message {
        for _ in 0..3 {
            let m = self.build(method, attrs(), true);
            let answer = self.transact(&m).await;
            let code = error_code(&answer);
            let had_credentials = self.nonce.is_some();
            if code == Some(401) && !had_credentials || code == Some(438) {
                self.realm = text(&answer, ATTR_REALM);
                self.nonce = text(&answer, ATTR_NONCE);
                continue;
            }
            return answer;
        }
        panic!("no final answer after three tries");
    }

    /// Allocates; the relayed address, or the error code.
    pub async fn allocate(&mut self) -> Result<SocketAddr, u16> {
        let answer = self
            .request(METHOD_ALLOCATE, || {
                vec![Box::new(RequestedTransport {
                    protocol: PROTO_UDP,
                }) as Box<dyn Setter>]
            })
            .await;
        if let Some(code) = error_code(&answer) {
            return Err(code);
        }
        assert_eq!(answer.typ.class, CLASS_SUCCESS_RESPONSE);
        self.verify(&answer);
        let mut relayed = RelayedAddress::default();
        relayed.get_from(&answer).expect("XOR-RELAYED-ADDRESS");
        Ok(SocketAddr::new(relayed.ip, relayed.port))
    }

    /// Deletes the allocation (Refresh with lifetime 0).
    pub async fn release(&mut self) -> Result<(), u16> {
        let answer = self
            .request(METHOD_REFRESH, || {
                vec![Box::new(Lifetime(Duration::ZERO)) as Box<dyn Setter>]
            })
            .await;
        error_code(&answer).map_or(Ok(()), Err)
    }

    pub async fn create_permission(&mut self, peer: SocketAddr) -> Result<(), u16> {
        let answer = self
            .request(METHOD_CREATE_PERMISSION, || {
                vec![Box::new(PeerAddress {
                    ip: peer.ip(),
                    port: peer.port(),
                }) as Box<dyn Setter>]
            })
            .await;
        self.verify(&answer);
        error_code(&answer).map_or(Ok(()), Err)
    }

    pub async fn channel_bind(&mut self, channel: u16, peer: SocketAddr) -> Result<(), u16> {
        let answer = self
            .request(METHOD_CHANNEL_BIND, || {
                vec![
                    Box::new(ChannelNumber(channel)) as Box<dyn Setter>,
                    Box::new(PeerAddress {
                        ip: peer.ip(),
                        port: peer.port(),
                    }),
                ]
            })
            .await;
        self.verify(&answer);
        error_code(&answer).map_or(Ok(()), Err)
    }

    pub async fn send_indication(&mut self, peer: SocketAddr, data: &[u8]) {
        let m = self.build(
            METHOD_SEND,
            vec![
                Box::new(PeerAddress {
                    ip: peer.ip(),
                    port: peer.port(),
                }),
                Box::new(Data(data.to_vec())),
            ],
            false,
        );
        self.send_raw(&m.raw).await;
    }

    pub async fn send_channel_data(&mut self, channel: u16, data: &[u8]) {
        let mut c = ChannelData {
            data: data.to_vec(),
            number: ChannelNumber(channel),
            raw: Vec::new(),
        };
        c.encode();
        self.send_raw(&c.raw).await;
    }

    /// The next relayed data, or None after [`WAIT`].
    pub async fn recv_relayed(&mut self) -> Option<Relayed> {
        loop {
            let raw = match self.pending.pop() {
                Some(raw) => raw,
                None => self.recv_raw().await?,
            };
            if ChannelData::is_channel_data(&raw) {
                let mut c = ChannelData {
                    raw,
                    ..Default::default()
                };
                c.decode().expect("ChannelData");
                return Some(Relayed::Channel(c.number.0, c.data));
            }
            let mut m = Message::new();
            if m.unmarshal_binary(&raw).is_ok()
                && m.typ == MessageType::new(METHOD_DATA, CLASS_INDICATION)
            {
                let mut peer = PeerAddress::default();
                peer.get_from(&m).expect("XOR-PEER-ADDRESS");
                let mut data = Data::default();
                data.get_from(&m).expect("DATA");
                return Some(Relayed::Data(SocketAddr::new(peer.ip, peer.port), data.0));
            }
        }
    }

    /// Asserts that a success or non-auth error answer carries a MESSAGE-INTEGRITY made with our key.
    fn verify(&self, answer: &Message) {
        let skip = matches!(error_code(answer), Some(400 | 401 | 438));
        if skip {
            return;
        }
        let (Some(realm), true) = (&self.realm, answer.typ.class != CLASS_REQUEST) else {
            return;
        };
        MessageIntegrity::new_long_term_integrity(
            self.username.clone(),
            realm.clone(),
            self.password.clone(),
        )
        .check(&mut answer.clone())
        .expect("the answer is signed with our long-term key");
    }
}

/// The ERROR-CODE of an error response.
pub fn error_code(m: &Message) -> Option<u16> {
    if m.typ.class != CLASS_ERROR_RESPONSE {
        return None;
    }
    let mut code = ErrorCodeAttribute::default();
    code.get_from(m).ok()?;
    Some(code.code.0)
}

/// A text attribute's value.
pub fn text(m: &Message, attr: stun::attributes::AttrType) -> Option<String> {
    TextAttribute::get_from_as(m, attr).ok().map(|a| a.text)
}

/// Parses an allowed-peer line for turn.conf.
pub fn peer_rule(addr: SocketAddr) -> String {
    let rule: PeerRule = addr.to_string().parse().expect("peer rule");
    rule.to_string()
}
