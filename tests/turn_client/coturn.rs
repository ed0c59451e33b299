//! coturn's `turnutils_uclient` as an independent TURN client, and a wire-level recorder of the
//! error codes the server sends it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::UdpSocket;

/// Runs coturn's turnutils_uclient; panics loudly if it is not installed (apt package `coturn`).
pub async fn uclient(args: &[&str]) -> (bool, String) {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new("turnutils_uclient")
            .args(&args)
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "turnutils_uclient is required (apt-get install coturn; .ci/run installs it): {e}"
                )
            });
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    })
    .await
    .expect("uclient ran")
}

/// An echo peer for uclient: sends back whatever arrives.
pub async fn echo_peer() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("echo peer");
    let addr = socket.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let _ = socket.send_to(&buf[..n], from).await;
        }
    });
    addr
}

/// A UDP proxy to `server` for one client that records the ERROR-CODE of every error response the
/// server sends back, parsed by hand (RFC 8489 §14.8) rather than with the crates under test.
pub async fn error_code_recorder(server: SocketAddr) -> (SocketAddr, Arc<Mutex<Vec<u16>>>) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("proxy");
    let addr = socket.local_addr().expect("addr");
    let codes = Arc::new(Mutex::new(Vec::new()));
    let seen = codes.clone();
    tokio::spawn(async move {
        let mut client = None;
        let mut buf = vec![0u8; 65_536];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let packet = &buf[..n];
            if from == server {
                if let Some(code) = wire_error_code(packet) {
                    seen.lock().expect("codes").push(code);
                }
                if let Some(c) = client {
                    let _ = socket.send_to(packet, c).await;
                }
            } else {
                client = Some(from);
                let _ = socket.send_to(packet, server).await;
            }
        }
    });
    (addr, codes)
}

fn wire_error_code(packet: &[u8]) -> Option<u16> {
    let kind = u16::from_be_bytes([*packet.first()?, *packet.get(1)?]);
    if kind & 0x0110 != 0x0110 {
        return None;
    }
    let mut at = 20;
    while at + 4 <= packet.len() {
        let typ = u16::from_be_bytes([packet[at], packet[at + 1]]);
        let len = usize::from(u16::from_be_bytes([packet[at + 2], packet[at + 3]]));
        if typ == 0x0009 {
            let class = u16::from(*packet.get(at + 6)? & 0x07);
            return Some(class * 100 + u16::from(*packet.get(at + 7)?));
        }
        at += 4 + len.div_ceil(4) * 4;
    }
    None
}
