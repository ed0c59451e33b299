//! Passive ICE-TCP on one listening port (RFC 6544), packets framed per RFC 4571.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rtc::shared::TransportProtocol;
use rtc::shared::tcp_framing::{TcpFrameDecoder, frame_packet};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::router::Router;
use super::stun;
use crate::worker::{Datagram, Input};

/// A connection that has not shown a routable STUN request by then is closed.
const FIRST_PACKET_TIMEOUT: Duration = Duration::from_secs(10);
/// Outbound packets queued per TCP connection before we drop.
const WRITE_QUEUE: usize = 512;

/// Accepts ICE-TCP connections forever.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    router: Arc<Router>,
    workers: Arc<[mpsc::Sender<Input>]>,
) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve(stream, router.clone(), workers.clone()));
            }
            Err(e) => {
                tracing::warn!(error = %e, "ice-tcp accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve(stream: TcpStream, router: Arc<Router>, workers: Arc<[mpsc::Sender<Input>]>) {
    let Ok(peer) = stream.peer_addr() else { return };
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Bytes>(WRITE_QUEUE);
    router.add_tcp_writer(peer, tx);
    let mut writer = tokio::spawn(async move {
        while let Some(packet) = rx.recv().await {
            if wr.write_all(&frame_packet(&packet)).await.is_err() {
                break;
            }
        }
    });

    let mut decoder = TcpFrameDecoder::new();
    let mut buf = vec![0u8; 8192];
    let mut routed = false;
    let started = Instant::now();
    loop {
        let left = if routed {
            Duration::MAX
        } else {
            FIRST_PACKET_TIMEOUT.saturating_sub(started.elapsed())
        };
        // The writer ends when the router drops it: the connection it carried is gone.
        let read = tokio::select! {
            r = tokio::time::timeout(left, rd.read(&mut buf)) => match r {
                Ok(r) => r,
                Err(_) => break,
            },
            _ = &mut writer => break,
        };
        let n = match read {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        decoder.extend_from_slice(&buf[..n]);
        while let Some(packet) = decoder.next_packet() {
            let ufrag = if stun::is_stun(&packet) {
                stun::local_ufrag(&packet)
            } else {
                None
            };
            let Some(route) = router.lookup((peer, TransportProtocol::TCP), ufrag) else {
                continue;
            };
            routed = true;
            let Some(w) = workers.get(route.worker) else {
                continue;
            };
            let _ = w.try_send(Input::Datagram(Datagram {
                conn: route.conn,
                peer,
                proto: TransportProtocol::TCP,
                data: BytesMut::from(&packet[..]),
                at: Instant::now(),
            }));
        }
    }
    router.remove_tcp(peer);
    writer.abort();
}
