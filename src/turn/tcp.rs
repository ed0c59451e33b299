//! TURN over TCP (RFC 8656 §3.1, client to server over TCP, relayed over UDP). STUN messages and
//! ChannelData are self-delimiting on a stream: a STUN message is its 20-byte header plus the
//! length in that header; ChannelData is its 4-byte header plus its length padded to a multiple of 4
//! (§12.5). Each connection's frames join one queue that the listener's read loop drains like UDP
//! datagrams, tagged with the connection's remote address; answers go back through [`TcpConns`],
//! which the `turn` crate uses as its socket (`send_to` a remote address = write to that connection).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use webrtc_util::Conn;

/// A connection that sends nothing for this long is closed (clients refresh allocations every few
/// minutes and browsers send consent checks every few seconds, so a live one is never this quiet).
const IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// A new connection must say something this soon, so idle sockets cannot pile up unauthenticated.
const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a closing connection may take to flush what is queued towards the client.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(1);
/// Frames queued towards one client; past it, frames are dropped as UDP would lose them, so one
/// slow client cannot stall the relay.
const WRITE_QUEUE: usize = 512;

/// Something that arrived over TCP.
#[derive(Debug)]
pub enum Inbound {
    /// One complete STUN message or ChannelData frame.
    Frame(Vec<u8>, SocketAddr),
    /// The connection ended: its allocation goes with it (RFC 8656 §3.1).
    Closed(SocketAddr),
}

/// Why a byte stream is not TURN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Neither a STUN message nor ChannelData.
    #[error("not a STUN message or ChannelData")]
    NotTurn,
    /// A STUN length that is not a multiple of 4.
    #[error("misaligned STUN length")]
    Misaligned,
}

/// The full length of the frame that starts with `head`.
pub fn frame_len(head: [u8; 4]) -> Result<usize, FrameError> {
    let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
    match head[0] >> 6 {
        0b00 if len % 4 == 0 => Ok(20 + len),
        0b00 => Err(FrameError::Misaligned),
        // RFC 8656 narrowed channels to 0x4000-0x4FFF, but RFC 5766 clients (coturn's among
        // them) still pick up to 0x7FFF, and the `turn` crate accepts those: frame them all.
        0b01 => Ok(4 + len.div_ceil(4) * 4),
        _ => Err(FrameError::NotTurn),
    }
}

/// Reads one frame; `Ok(None)` at a clean end of stream.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Option<Vec<u8>>> {
    let mut head = [0u8; 4];
    match r.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let total = frame_len(head).map_err(std::io::Error::other)?;
    let mut frame = vec![0u8; total];
    frame[..4].copy_from_slice(&head);
    r.read_exact(&mut frame[4..]).await?;
    // A STUN message carries the magic cookie; anything else that looked like one (a TLS record,
    // say) means the peer does not speak TURN, and the connection is dropped.
    if head[0] >> 6 == 0 && frame.get(4..8) != Some(&[0x21, 0x12, 0xa4, 0x42][..]) {
        return Err(std::io::Error::other(FrameError::NotTurn));
    }
    Ok(Some(frame))
}

/// The open TCP connections, as the socket the `turn` crate answers through.
#[derive(Debug)]
pub struct TcpConns {
    local: SocketAddr,
    writers: Mutex<HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>>,
}

impl TcpConns {
    /// No connections yet, on a listener bound to `local`.
    pub fn new(local: SocketAddr) -> TcpConns {
        TcpConns {
            local,
            writers: Mutex::new(HashMap::new()),
        }
    }

    /// How many connections are open.
    pub fn count(&self) -> usize {
        self.writers.lock().map_or(0, |w| w.len())
    }

    fn insert(&self, remote: SocketAddr, tx: mpsc::Sender<Vec<u8>>) {
        if let Ok(mut w) = self.writers.lock() {
            w.insert(remote, tx);
        }
    }

    fn remove(&self, remote: SocketAddr) {
        if let Ok(mut w) = self.writers.lock() {
            w.remove(&remote);
        }
    }
}

fn unsupported() -> webrtc_util::Error {
    webrtc_util::Error::Other("not supported on the TURN-over-TCP connection set".into())
}

#[async_trait]
impl Conn for TcpConns {
    async fn connect(&self, _addr: SocketAddr) -> webrtc_util::Result<()> {
        Err(unsupported())
    }

    async fn recv(&self, _buf: &mut [u8]) -> webrtc_util::Result<usize> {
        Err(unsupported())
    }

    // Frames reach the read loop through the `Inbound` queue, never through here.
    async fn recv_from(&self, _buf: &mut [u8]) -> webrtc_util::Result<(usize, SocketAddr)> {
        Err(unsupported())
    }

    async fn send(&self, _buf: &[u8]) -> webrtc_util::Result<usize> {
        Err(unsupported())
    }

    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> webrtc_util::Result<usize> {
        let tx = self
            .writers
            .lock()
            .ok()
            .and_then(|w| w.get(&target).cloned())
            .ok_or_else(|| webrtc_util::Error::Other(format!("no TCP connection from {target}")))?;
        // A full queue drops the frame, as a congested UDP path would.
        let _ = tx.try_send(buf.to_vec());
        Ok(buf.len())
    }

    fn local_addr(&self) -> webrtc_util::Result<SocketAddr> {
        Ok(self.local)
    }

    fn remote_addr(&self) -> Option<SocketAddr> {
        None
    }

    // The crate closes its "turn socket" whenever one allocation ends; for us that socket is the
    // whole listener, which must stay open.
    async fn close(&self) -> webrtc_util::Result<()> {
        Ok(())
    }

    fn as_any(&self) -> &(dyn std::any::Any + Send + Sync) {
        self
    }
}

/// Accepts connections until `stop` fires; each one's frames go to `inbound`.
pub async fn accept_loop(
    listener: TcpListener,
    conns: Arc<TcpConns>,
    inbound: mpsc::Sender<Inbound>,
    max_connections: usize,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(cause = %e, "TURN TCP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        if conns.count() >= max_connections {
            metrics::counter!("turn_refused_total", "reason" => "tcp_connections").increment(1);
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve_connection(
            stream,
            remote,
            conns.clone(),
            inbound.clone(),
            stop.clone(),
        ));
    }
}

async fn serve_connection(
    stream: TcpStream,
    remote: SocketAddr,
    conns: Arc<TcpConns>,
    inbound: mpsc::Sender<Inbound>,
    mut stop: watch::Receiver<bool>,
) {
    let (mut reader, mut writer) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
    conns.insert(remote, tx);
    let write_task = tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            if writer.write_all(&frame).await.is_err() {
                break;
            }
        }
        let _ = writer.shutdown().await;
    });
    let mut timeout = FIRST_FRAME_TIMEOUT;
    loop {
        let frame = tokio::select! {
            read = tokio::time::timeout(timeout, read_frame(&mut reader)) => read,
            _ = stop.changed() => break,
        };
        match frame {
            Ok(Ok(Some(frame))) => {
                timeout = IDLE_TIMEOUT;
                if inbound.send(Inbound::Frame(frame, remote)).await.is_err() {
                    break;
                }
            }
            Ok(Ok(None)) => break,
            Ok(Err(e)) => {
                tracing::debug!(%remote, cause = %e, "TURN TCP connection dropped");
                break;
            }
            Err(_) => {
                tracing::debug!(%remote, "TURN TCP connection idle, closing");
                break;
            }
        }
    }
    conns.remove(remote);
    // Removing the sender ends the writer once it has flushed what is queued; a client that has
    // stopped reading does not get to hold the connection (and its allocation) open.
    let abort = write_task.abort_handle();
    if tokio::time::timeout(FLUSH_TIMEOUT, write_task)
        .await
        .is_err()
    {
        abort.abort();
    }
    let _ = inbound.send(Inbound::Closed(remote)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_lengths() {
        // STUN Allocate request with 8 bytes of attributes.
        assert_eq!(frame_len([0x00, 0x03, 0x00, 0x08]), Ok(28));
        assert_eq!(
            frame_len([0x00, 0x03, 0x00, 0x07]),
            Err(FrameError::Misaligned)
        );
        // ChannelData: 5 bytes of data are padded to 8 on a stream.
        assert_eq!(frame_len([0x40, 0x00, 0x00, 0x05]), Ok(12));
        assert_eq!(frame_len([0x40, 0x00, 0x00, 0x00]), Ok(4));
        assert_eq!(frame_len([0x7f, 0xff, 0x00, 0x04]), Ok(8), "RFC 5766 range");
        // RTP, or anything else with the top bit set: not TURN.
        assert_eq!(
            frame_len([0x80, 0x60, 0x00, 0x01]),
            Err(FrameError::NotTurn)
        );
        assert_eq!(
            frame_len([0xc0, 0x00, 0x00, 0x01]),
            Err(FrameError::NotTurn)
        );
    }

    #[tokio::test]
    async fn reads_back_to_back_frames_from_a_stream() {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&[0x00, 0x01, 0x00, 0x00]);
        bytes.extend_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
        bytes.extend_from_slice(&[7u8; 12]);
        bytes.extend_from_slice(&[0x40, 0x01, 0x00, 0x03, 1, 2, 3, 0]);
        let mut stream = &bytes[..];
        let first = read_frame(&mut stream).await.expect("io").expect("frame");
        assert_eq!(first.len(), 20);
        let second = read_frame(&mut stream).await.expect("io").expect("frame");
        assert_eq!(second, vec![0x40, 0x01, 0x00, 0x03, 1, 2, 3, 0]);
        assert!(read_frame(&mut stream).await.expect("io").is_none());

        // A TLS record has a STUN-like first word but no magic cookie.
        let mut tls = vec![0x16, 0x03, 0x00, 0x04, 0x01, 0x00, 0x00, 0x00];
        tls.resize(24, 0);
        let err = read_frame(&mut &tls[..]).await.expect_err("not TURN");
        assert_eq!(err.kind(), std::io::ErrorKind::Other, "{err}");
    }
}
