//! The embedded TURN server and `GET /api/ice-servers`, end to end on loopback: REST credentials
//! from the API, allocations over UDP and TCP, the RFC's error codes, the relay policy, relaying,
//! quotas, and coturn's `turnutils_uclient` as an independent client.

mod common;
mod turn_client;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Backend, TestServer, assert_error, phone};
use mescon::clock::Clock;
use reqwest::StatusCode;
use stun::attributes::{ATTR_NONCE, ATTR_REALM};
use tokio::net::UdpSocket;
use turn_client::coturn::{echo_peer, error_code_recorder, uclient};
use turn_client::{Relayed, TurnClient, error_code, text};

/// A server with TURN on 127.0.0.1 (a free port), `turn_conf` as its turn.conf, and the SFU's
/// media address at `media_udp`.
async fn turn_server(
    turn_conf: &str,
    media_udp: Option<SocketAddr>,
) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("turn.conf");
    std::fs::write(&path, turn_conf).expect("write turn.conf");
    let srv = TestServer::start_with(Backend::Sqlite, |c| {
        c.turn_listen = Some("127.0.0.1:0".parse().expect("addr"));
        c.turn_config = Some(path);
        if let Some(m) = media_udp {
            c.media_udp = m;
        }
    })
    .await;
    (srv, dir)
}

fn turn_addr(srv: &TestServer) -> SocketAddr {
    let running = srv.running.as_ref().expect("running");
    let addr = running.app.config.turn_listen.expect("TURN is on");
    assert_ne!(addr.port(), 0, "the bound port is recorded");
    addr
}

/// A free loopback UDP port, for a media address the test does not bind itself.
fn free_udp_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.local_addr().expect("addr").port()
}

/// Logs in and fetches TURN credentials: (username, password).
async fn credentials(srv: &TestServer, n: u32) -> (String, String) {
    let me = srv.login(&phone(n)).await;
    let (status, body) = srv.get("/api/ice-servers", &me.access).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let turn = &body["ice_servers"][1];
    (
        turn["username"].as_str().expect("username").into(),
        turn["credential"].as_str().expect("credential").into(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ice_servers_without_turn_is_an_empty_list_and_needs_a_token() {
    let srv = TestServer::start(Backend::Sqlite).await;
    let (status, _, body) = srv.call("GET", "/api/ice-servers", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_error(&body, "unauthorized");
    let me = srv.login(&phone(1)).await;
    let (status, body) = srv.get("/api/ice-servers", &me.access).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, serde_json::json!({"ice_servers": [], "ttl": 3600}));
    srv.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ice_servers_hand_out_working_rest_credentials() {
    let (srv, _dir) = turn_server("", None).await;
    let turn = turn_addr(&srv);
    let me = srv.login(&phone(2)).await;
    let (status, body) = srv.get("/api/ice-servers", &me.access).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["ttl"], 3600);
    let servers = body["ice_servers"].as_array().expect("list");
    assert_eq!(servers.len(), 2, "{body}");
    // No public IP or URL configured: the host comes from the request's Host header.
    let authority = format!("127.0.0.1:{}", turn.port());
    assert_eq!(
        servers[0],
        serde_json::json!({"urls": [format!("stun:{authority}")]})
    );
    assert_eq!(
        servers[1]["urls"],
        serde_json::json!([
            format!("turn:{authority}?transport=udp"),
            format!("turn:{authority}?transport=tcp")
        ])
    );
    let username = servers[1]["username"].as_str().expect("username");
    let (expiry, user_id) = username.split_once(':').expect("<expiry>:<user_id>");
    assert_eq!(user_id, me.user_id);
    let expiry: i64 = expiry.parse().expect("unix expiry");
    let now = srv.clock.now_ms() / 1000;
    assert!(
        (now + 3590..=now + 3600).contains(&expiry),
        "valid for 1 h: {expiry} vs {now}"
    );
    let secret = &srv.running.as_ref().expect("running").app.secrets.turn;
    assert_eq!(
        servers[1]["credential"].as_str(),
        Some(mescon::turn::credentials::password_for(secret, username).as_str()),
        "base64(HMAC-SHA1(secret, username))"
    );

    // The credential opens an allocation.
    let password = servers[1]["credential"].as_str().expect("credential");
    let mut client = TurnClient::udp(turn, username, password).await;
    client
        .allocate()
        .await
        .expect("allocation with the API's credential");
    srv.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ice_servers_advertise_the_public_ip_else_the_public_url_host() {
    let srv = TestServer::start_with(Backend::Sqlite, |c| {
        c.turn_listen = Some("127.0.0.1:0".parse().expect("addr"));
        c.public_ips = vec!["2001:db8::7".parse().expect("ip")];
    })
    .await;
    let port = turn_addr(&srv).port();
    let me = srv.login(&phone(3)).await;
    let (_, body) = srv.get("/api/ice-servers", &me.access).await;
    assert_eq!(
        body["ice_servers"][0]["urls"][0],
        format!("stun:[2001:db8::7]:{port}")
    );
    srv.finish().await;

    // Without a public IP, the public URL's host (never its port).
    let srv = TestServer::start_with(Backend::Sqlite, |c| {
        c.turn_listen = Some("127.0.0.1:0".parse().expect("addr"));
        c.public_url = Some(url::Url::parse("https://chat.example.org:8443/").expect("url"));
    })
    .await;
    let port = turn_addr(&srv).port();
    let me = srv.login(&phone(3)).await;
    let (_, body) = srv.get("/api/ice-servers", &me.access).await;
    assert_eq!(
        body["ice_servers"][1]["urls"][1],
        format!("turn:chat.example.org:{port}?transport=tcp")
    );
    srv.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocations_over_udp_and_tcp() {
    let (srv, _dir) = turn_server("min-port = 51000\nmax-port = 51999\n", None).await;
    let turn = turn_addr(&srv);
    let (user, pass) = credentials(&srv, 4).await;
    for mut client in [
        TurnClient::udp(turn, &user, &pass).await,
        TurnClient::tcp(turn, &user, &pass).await,
    ] {
        let relayed = client.allocate().await.expect("allocation");
        assert_eq!(relayed.ip().to_string(), "127.0.0.1");
        assert!((51000..=51999).contains(&relayed.port()), "{relayed}");
        assert_eq!(
            client.allocate().await,
            Err(437),
            "one allocation per 5-tuple"
        );
        client
            .release()
            .await
            .expect("refresh with lifetime 0 deletes it");
        assert_eq!(client.release().await, Err(437), "and then it is gone");
    }
    srv.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_get_401_and_old_nonces_438() {
    let (srv, _dir) = turn_server("", None).await;
    let turn = turn_addr(&srv);
    let (user, pass) = credentials(&srv, 5).await;
    let secret = srv
        .running
        .as_ref()
        .expect("running")
        .app
        .secrets
        .turn
        .clone();
    let user_id = user.split_once(':').expect("user id").1.to_string();
    let expired = mescon::turn::mint(&secret, &user_id, srv.clock.now_ms() / 1000 - 7200, 3600);
    let forged = mescon::turn::mint(
        b"not the server's secret, 32 bytes!",
        &user_id,
        srv.clock.now_ms() / 1000,
        3600,
    );
    let cases = [
        (
            "wrong password",
            user.clone(),
            "d3JvbmcgcGFzc3dvcmQ=".to_string(),
        ),
        ("expired username", expired.username, expired.password),
        ("other secret", forged.username, forged.password),
        ("not a REST username", "alice".to_string(), pass.clone()),
    ];
    for tcp in [false, true] {
        for (what, username, password) in &cases {
            let mut client = if tcp {
                TurnClient::tcp(turn, username, password).await
            } else {
                TurnClient::udp(turn, username, password).await
            };
            let answer = client
                .request(stun::message::METHOD_ALLOCATE, || {
                    vec![Box::new(turn::proto::reqtrans::RequestedTransport {
                        protocol: turn::proto::PROTO_UDP,
                    }) as Box<dyn stun::message::Setter>]
                })
                .await;
            assert_eq!(error_code(&answer), Some(401), "{what} (tcp: {tcp})");
            assert_eq!(
                text(&answer, ATTR_REALM).as_deref(),
                Some("mescon"),
                "{what}"
            );
            assert!(
                text(&answer, ATTR_NONCE).is_some_and(|n| !n.is_empty()),
                "{what}"
            );
        }
    }

    // A nonce the server never issued (or has forgotten) is stale: 438, then the retry works.
    let mut client = TurnClient::udp(turn, &user, &pass).await;
    client.realm = Some("mescon".into());
    client.nonce = Some("0123456789abcdef".into());
    let m = client.build(
        stun::message::METHOD_ALLOCATE,
        vec![Box::new(turn::proto::reqtrans::RequestedTransport {
            protocol: turn::proto::PROTO_UDP,
        })],
        true,
    );
    let answer = client.transact(&m).await;
    assert_eq!(error_code(&answer), Some(438));
    assert!(text(&answer, ATTR_NONCE).is_some());
    client.allocate().await.expect("retry with the new nonce");
    srv.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocations_outlive_their_credential_but_new_ones_need_a_fresh_one() {
    let media: SocketAddr = format!("127.0.0.1:{}", free_udp_port())
        .parse()
        .expect("addr");
    let (srv, _dir) = turn_server("", Some(media)).await;
    let turn = turn_addr(&srv);
    let (user, pass) = credentials(&srv, 11).await;
    let mut call = TurnClient::tcp(turn, &user, &pass).await;
    call.allocate().await.expect("allocation");
    srv.clock.advance(Duration::from_secs(2 * 3600));
    // The call goes on: refreshes and permissions on its own allocation still work...
    call.create_permission(media)
        .await
        .expect("permission after expiry");
    let answer = call.request(stun::message::METHOD_REFRESH, Vec::new).await;
    assert_eq!(error_code(&answer), None, "refresh after expiry");
    // ...but the expired credential opens nothing new.
    let mut late = TurnClient::udp(turn, &user, &pass).await;
    assert_eq!(late.allocate().await, Err(401));
    srv.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_policy_refuses_other_peers_with_403() {
    let media: SocketAddr = format!("127.0.0.1:{}", free_udp_port())
        .parse()
        .expect("addr");
    let (srv, _dir) = turn_server("", Some(media)).await;
    let turn = turn_addr(&srv);
    let (user, pass) = credentials(&srv, 6).await;
    for tcp in [false, true] {
        let mut client = if tcp {
            TurnClient::tcp(turn, &user, &pass).await
        } else {
            TurnClient::udp(turn, &user, &pass).await
        };
        client.allocate().await.expect("allocation");
        // Private ranges, other hosts, the wildcard: never.
        for peer in [
            "10.0.0.1:7882",
            "192.168.1.1:7882",
            "203.0.113.9:7882",
            "127.0.0.2:7882",
        ] {
            let peer: SocketAddr = peer.parse().expect("addr");
            assert_eq!(client.create_permission(peer).await, Err(403), "{peer}");
            assert_eq!(client.channel_bind(0x4001, peer).await, Err(403), "{peer}");
        }
        // The SFU's media address: yes. Another port of the same host: no channel to it.
        client
            .create_permission(media)
            .await
            .expect("the SFU itself");
        client
            .channel_bind(0x4000, media)
            .await
            .expect("a channel to the SFU");
        let other_port = SocketAddr::new(media.ip(), media.port().wrapping_add(1).max(1024));
        assert_eq!(client.channel_bind(0x4002, other_port).await, Err(403));
    }
    srv.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_wildcard_media_bind_the_relay_reaches_what_the_sfu_advertises() {
    // The default deployment: media on 0.0.0.0 and no MESCON_PUBLIC_IP. The SFU advertises this
    // host's addresses (and 127.0.0.1, which counts here because TURN listens on loopback).
    let port = free_udp_port();
    let (srv, _dir) = turn_server("", Some(format!("0.0.0.0:{port}").parse().expect("addr"))).await;
    let turn = turn_addr(&srv);
    let media = srv.running.as_ref().expect("running").app.config.media_udp;
    let sfu: SocketAddr = format!("127.0.0.1:{}", media.port()).parse().expect("addr");
    let (user, pass) = credentials(&srv, 9).await;
    let mut client = TurnClient::udp(turn, &user, &pass).await;
    client.allocate().await.expect("allocation");
    client
        .channel_bind(0x4000, sfu)
        .await
        .expect("a channel to the SFU's advertised address");
    // Still nothing else.
    let other: SocketAddr = "203.0.113.9:7882".parse().expect("addr");
    assert_eq!(client.create_permission(other).await, Err(403));
    let other_port = SocketAddr::new(sfu.ip(), media.port().wrapping_add(1).max(1024));
    assert_eq!(client.channel_bind(0x4002, other_port).await, Err(403));
    srv.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_is_relayed_both_ways_to_an_allowed_peer() {
    let peer = UdpSocket::bind("127.0.0.1:0").await.expect("peer socket");
    let peer_addr = peer.local_addr().expect("addr");
    let conf = format!("allowed-peer-ip = {peer_addr}\n");
    let media: SocketAddr = format!("127.0.0.1:{}", free_udp_port())
        .parse()
        .expect("addr");
    let (srv, _dir) = turn_server(&conf, Some(media)).await;
    let turn = turn_addr(&srv);
    let (user, pass) = credentials(&srv, 7).await;
    for tcp in [false, true] {
        let mut client = if tcp {
            TurnClient::tcp(turn, &user, &pass).await
        } else {
            TurnClient::udp(turn, &user, &pass).await
        };
        let relayed = client.allocate().await.expect("allocation");
        client
            .create_permission(peer_addr)
            .await
            .expect("permission");

        // Send indication → peer, peer → Data indication.
        client.send_indication(peer_addr, b"hello sfu").await;
        let mut buf = [0u8; 1500];
        let (n, from) = tokio::time::timeout(Duration::from_secs(5), peer.recv_from(&mut buf))
            .await
            .expect("relayed within 5 s")
            .expect("recv");
        assert_eq!(&buf[..n], b"hello sfu");
        assert_eq!(from.port(), relayed.port(), "sent from the relayed port");
        peer.send_to(b"hello client", from).await.expect("reply");
        assert_eq!(
            client.recv_relayed().await,
            Some(Relayed::Data(peer_addr, b"hello client".to_vec()))
        );

        // Channel → peer, peer → ChannelData (odd lengths exercise TCP padding).
        client
            .channel_bind(0x4000, peer_addr)
            .await
            .expect("channel");
        client.send_channel_data(0x4000, b"rtp!!").await;
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), peer.recv_from(&mut buf))
            .await
            .expect("relayed within 5 s")
            .expect("recv");
        assert_eq!(&buf[..n], b"rtp!!");
        peer.send_to(b"rtcp", from).await.expect("reply");
        assert_eq!(
            client.recv_relayed().await,
            Some(Relayed::Channel(0x4000, b"rtcp".to_vec()))
        );

        // A Send indication to another port of an allowed IP is dropped, not relayed.
        let other = UdpSocket::bind("127.0.0.1:0").await.expect("other");
        client
            .send_indication(other.local_addr().expect("addr"), b"sneaky")
            .await;
        let leaked =
            tokio::time::timeout(Duration::from_millis(300), other.recv_from(&mut buf)).await;
        assert!(
            leaked.is_err(),
            "no relaying to a port the policy does not name"
        );
    }
    srv.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_refuse_the_next_allocation() {
    let (srv, _dir) = turn_server("user-quota = 3\ntotal-quota = 4\n", None).await;
    let turn = turn_addr(&srv);
    let (a_user, a_pass) = credentials(&srv, 8).await;
    let mut held = Vec::new();
    for i in 0..3 {
        // Alternate transports: the quota counts across UDP and TCP.
        let mut c = if i % 2 == 0 {
            TurnClient::udp(turn, &a_user, &a_pass).await
        } else {
            TurnClient::tcp(turn, &a_user, &a_pass).await
        };
        c.allocate().await.expect("within the user quota");
        held.push(c);
    }
    let mut fourth = TurnClient::udp(turn, &a_user, &a_pass).await;
    assert_eq!(
        fourth.allocate().await,
        Err(486),
        "Allocation Quota Reached"
    );

    // Another user fills the last slot of the total, then meets the server's cap.
    let (b_user, b_pass) = credentials(&srv, 9).await;
    let mut b1 = TurnClient::tcp(turn, &b_user, &b_pass).await;
    b1.allocate().await.expect("total quota has room for one");
    let mut b2 = TurnClient::udp(turn, &b_user, &b_pass).await;
    assert_eq!(b2.allocate().await, Err(508), "Insufficient Capacity");

    // Closing a TCP connection ends its allocation (RFC 8656 §3.1), freeing the slot.
    drop(b1);
    let mut freed = false;
    for _ in 0..50 {
        let mut b3 = TurnClient::udp(turn, &b_user, &b_pass).await;
        if b3.allocate().await.is_ok() {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(freed, "the closed connection's allocation was released");
    srv.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coturn_uclient_relays_through_mescon_over_udp_and_tcp() {
    let peer = echo_peer().await;
    // uclient also binds a channel to the peer's next port (its RTCP habit, even with -c): allow it.
    let rtcp = std::net::SocketAddr::new(peer.ip(), peer.port() + 1);
    let (srv, _dir) = turn_server(
        &format!("allowed-peer-ip = {peer}\nallowed-peer-ip = {rtcp}\n"),
        None,
    )
    .await;
    let turn = turn_addr(&srv);
    let (user, pass) = credentials(&srv, 10).await;
    let port = turn.port().to_string();
    let peer_port = peer.port().to_string();
    let base = [
        "-u",
        &user,
        "-p",
        &port,
        "-e",
        "127.0.0.1",
        "-r",
        &peer_port,
        "-c",
        "-z",
        "5",
    ];
    for transport in [&[][..], &["-t"][..]] {
        let mut args = base.to_vec();
        args.extend(["-w", &pass, "-n", "20", "-l", "171"]);
        args.extend(transport);
        args.push("127.0.0.1");
        let (ok, out) = uclient(&args).await;
        assert!(ok, "uclient {transport:?} failed:\n{out}");
        assert!(
            out.contains("Total lost packets 0 (0.000000%)"),
            "uclient {transport:?} saw loss:\n{out}"
        );
    }

    // The independent client's wrong password is answered 401 (never the crate's old 400): a
    // recording proxy between uclient and the server reads the ERROR-CODE off the wire.
    let (proxy, codes) = error_code_recorder(turn).await;
    let proxy_port = proxy.port().to_string();
    let args = [
        "-u",
        &user,
        "-w",
        "wrong",
        "-p",
        &proxy_port,
        "-e",
        "127.0.0.1",
        "-r",
        &peer_port,
        "-c",
        "-n",
        "1",
        "127.0.0.1",
    ];
    let (ok, out) = uclient(&args).await;
    assert!(!ok, "a wrong password must not allocate:\n{out}");
    let codes = codes.lock().expect("codes").clone();
    assert!(codes.contains(&401), "uclient was answered {codes:?}");
    assert!(!codes.contains(&400), "uclient was answered {codes:?}");
    srv.finish().await;
}
