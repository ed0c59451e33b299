//! A lossy/counting UDP relay between a client peer and the SFU.

use std::sync::{Arc, Mutex};

/// A UDP relay between a client and the SFU that can drop or count what the SFU sends.
pub struct Proxy {
    /// Where the client should send (put it in place of the SFU's candidate).
    pub addr: std::net::SocketAddr,
    /// Datagrams from the SFU the filter dropped.
    pub dropped: Arc<std::sync::atomic::AtomicUsize>,
    /// Datagrams from the SFU the filter counted.
    pub counted: Arc<std::sync::atomic::AtomicUsize>,
    /// The latest datagrams the client sent, oldest first (up to [`UP_LOG`]).
    pub sent_up: Arc<Mutex<std::collections::VecDeque<Vec<u8>>>>,
    /// The socket the SFU knows as the client's.
    back: Arc<tokio::net::UdpSocket>,
    sfu: std::net::SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Upstream datagrams the proxy remembers.
pub const UP_LOG: usize = 256;

/// What the proxy does with a datagram from the SFU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Count,
    Drop,
}

impl Proxy {
    /// Relays between one client and `sfu`; `filter` judges each datagram from the SFU.
    pub async fn spawn(
        sfu: std::net::SocketAddr,
        filter: impl Fn(&[u8]) -> Verdict + Send + 'static,
    ) -> Proxy {
        use std::sync::atomic::Ordering;
        let front = Arc::new(
            tokio::net::UdpSocket::bind("127.0.0.1:0")
                .await
                .expect("bind"),
        );
        let back = Arc::new(
            tokio::net::UdpSocket::bind("127.0.0.1:0")
                .await
                .expect("bind"),
        );
        let addr = front.local_addr().expect("addr");
        let client: Arc<Mutex<Option<std::net::SocketAddr>>> = Default::default();
        let dropped = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let sent_up: Arc<Mutex<std::collections::VecDeque<Vec<u8>>>> = Default::default();
        let up = {
            let (front, back, client) = (front.clone(), back.clone(), client.clone());
            let sent_up = sent_up.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 2048];
                while let Ok((n, from)) = front.recv_from(&mut buf).await {
                    if let Ok(mut c) = client.lock() {
                        *c = Some(from);
                    }
                    if let Ok(mut log) = sent_up.lock() {
                        if log.len() == UP_LOG {
                            log.pop_front();
                        }
                        log.push_back(buf[..n].to_vec());
                    }
                    let _ = back.send_to(&buf[..n], sfu).await;
                }
            })
        };
        let down = {
            let (dropped, counted, back) =
                (Arc::clone(&dropped), Arc::clone(&counted), back.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 2048];
                while let Ok((n, _)) = back.recv_from(&mut buf).await {
                    match filter(&buf[..n]) {
                        Verdict::Drop => {
                            dropped.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        Verdict::Count => {
                            counted.fetch_add(1, Ordering::Relaxed);
                        }
                        Verdict::Pass => {}
                    }
                    let to = client.lock().ok().and_then(|c| *c);
                    if let Some(to) = to {
                        let _ = front.send_to(&buf[..n], to).await;
                    }
                }
            })
        };
        Proxy {
            addr,
            dropped,
            counted,
            sent_up,
            back,
            sfu,
            tasks: vec![up, down],
        }
    }

    /// Sends a datagram to the SFU as if the client had: from the address the SFU knows.
    pub async fn inject(&self, data: &[u8]) {
        let _ = self.back.send_to(data, self.sfu).await;
    }

    /// Points an SFU SDP's UDP candidate at the proxy.
    pub fn rewrite(&self, sdp: &str, sfu: std::net::SocketAddr) -> String {
        sdp.replace(
            &format!(" {} {} typ host", sfu.ip(), sfu.port()),
            &format!(" {} {} typ host", self.addr.ip(), self.addr.port()),
        )
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
