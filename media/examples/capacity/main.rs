//! What one SFU core can forward: a bounded loopback load with the SFU alone in a child process.
//!
//! ```text
//! cargo run -p mescon-media --release --example capacity -- [publishers] [subscribers] [frames/s] [seconds] [video_bytes] [rooms] [workers]
//! ```
//! Defaults: 4 publishers, 10 subscribers, 1000 frames/s per publisher (one video and one audio
//! packet per frame), 10 s, 1000-byte video, 1 room. With `rooms`, every room gets that many
//! publishers and subscribers of its own: `1 1 ... 100` is the shape of 100 one-to-one calls'
//! worth of streams. With `workers` (default 1), the SFU spreads its rooms over that many
//! workers, one thread each, and the report says how much the busiest thread did. Stops by itself.
//!
//! The SFU runs in a child process (this program, started again with `MESCON_CAPACITY_SFU` set
//! to the number of workers; one thread per worker), so its CPU time and resident memory are
//! its own: nothing of the clients is counted. Signalling crosses the child's stdin and stdout,
//! one line per message. The clients are `rtc` sans-I/O peer connections over real UDP sockets on loopback,
//! driven from one thread of this process: cheap enough per packet to push the SFU towards a
//! full core (the async `webrtc` clients of the tests saturate at a tenth of that). Subscribers
//! decrypt and answer every packet like a real receiver (receiver reports, transport-wide-cc
//! feedback); publishers send through `rtc`'s own write path.
//!
//! RSS and heap per participant are marginal costs: a first pair connects, exchanges media and
//! leaves before the baseline, so what the first connection pays once (code paged in, tables
//! built, pools grown) is not divided among the participants. The heap figure (glibc's
//! `mallinfo2`) is the steadier of the two: RSS also moves with what the allocator keeps.
//!
//! Reported: forwarded packets/s, the SFU's CPU (cores used, packets/s per core), loss, the
//! delay the SFU adds (its own histogram: arrival at the host to `sendmmsg`) and the SFU process's RSS
//! per participant.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::RTCPeerConnection;
use rtc::peer_connection::event::RTCPeerConnectionEvent;
use rtc::peer_connection::message::RTCMessage;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::rtp;
use rtc::rtp_transceiver::RTCRtpSenderId;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

mod peer;
mod sfu;

use peer::Conn;
use sfu::{own_usage, serve};

type Res<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn main() -> Res<()> {
    // The child's value is its number of workers: one thread each.
    match std::env::var("MESCON_CAPACITY_SFU") {
        Ok(workers) => {
            let workers = workers.parse::<usize>().unwrap_or(1).max(1);
            let rt = if workers == 1 {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?
            } else {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(workers)
                    .enable_all()
                    .build()?
            };
            rt.block_on(serve(workers))
        }
        Err(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(drive()),
    }
}

// --- the line protocol ---------------------------------------------------------------------

/// SDP travels on one line: backslash, CR and LF escaped.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('\r', "\\r")
        .replace('\n', "\\n")
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

/// Splits `"verb pid rest"`.
fn words(line: &str) -> (&str, &str, &str) {
    let mut it = line.splitn(3, ' ');
    (
        it.next().unwrap_or(""),
        it.next().unwrap_or(""),
        it.next().unwrap_or(""),
    )
}

/// Lines to the SFU process, and the routing of its answers.
#[derive(Clone)]
struct Signal {
    to_sfu: mpsc::UnboundedSender<String>,
    routes: Arc<std::sync::Mutex<HashMap<String, mpsc::UnboundedSender<String>>>>,
}

impl Signal {
    fn send(&self, verb: &str, pid: &str, rest: &str) {
        let _ = self.to_sfu.send(format!("{verb} {pid} {rest}"));
    }

    /// Lines about `pid` (or, for `"-"`, the SFU's own replies) arrive on the returned channel.
    fn route(&self, pid: &str) -> mpsc::UnboundedReceiver<String> {
        let (tx, rx) = mpsc::unbounded_channel();
        if let Ok(mut r) = self.routes.lock() {
            r.insert(pid.to_string(), tx);
        }
        rx
    }
}

/// What every client task adds to, read by the driver.
#[derive(Default)]
struct Counters {
    /// RTP packets decrypted by subscribers.
    received: AtomicU64,
    /// RTP packets handed to publishers' connections.
    sent: AtomicU64,
    /// Subscribers that see every published stream.
    complete: AtomicUsize,
    /// Publish connections that are up.
    publishing: AtomicUsize,
    /// Whether publishers send now.
    sending: AtomicBool,
    /// A connection failed: the run is invalid.
    failed: AtomicBool,
}

struct Load {
    frames_per_s: u64,
    video_bytes: usize,
    streams: usize,
}

async fn drive() -> Res<()> {
    let arg = |i: usize, default: u64, max: u64| {
        std::env::args()
            .nth(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or(default)
            .clamp(1, max)
    };
    let publishers = arg(1, 4, 20) as usize;
    let subscribers = arg(2, 10, 50) as usize;
    let frames_per_s = arg(3, 1000, 20_000);
    let seconds = arg(4, 10, 60);
    let video_bytes = arg(5, 1000, 1200) as usize;
    let rooms = arg(6, 1, 200) as usize;
    let workers = arg(7, 1, 8);
    let load = Arc::new(Load {
        frames_per_s,
        video_bytes,
        streams: publishers * 2,
    });

    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .env("MESCON_CAPACITY_SFU", workers.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut child_in = child.stdin.take().ok_or("no stdin")?;
    let child_out = child.stdout.take().ok_or("no stdout")?;
    let (to_sfu, mut to_sfu_rx) = mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        while let Some(mut line) = to_sfu_rx.recv().await {
            line.push('\n');
            if child_in.write_all(line.as_bytes()).await.is_err() {
                break;
            }
        }
    });
    let signal = Signal {
        to_sfu,
        routes: Default::default(),
    };
    let mut control = signal.route("-");
    {
        let routes = signal.routes.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(child_out).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let (verb, pid, _) = words(&line);
                let key = match verb {
                    "ready" | "marked" | "usage" => "-",
                    _ => pid,
                };
                if let Some(tx) = routes.lock().ok().and_then(|r| r.get(key).cloned()) {
                    let _ = tx.send(line);
                } else {
                    eprintln!("capacity: unrouted line from the SFU: {line}");
                }
            }
        });
    }
    // The SFU's address reaches the clients in its SDP (ICE-lite, every candidate listed).
    expect(&mut control, "ready").await?;
    // What the first connections cost once (code paged in, tables built, the allocator's and
    // the runtime's pools grown) is not a cost per participant: a pair connects, exchanges
    // media and leaves before the baseline is taken.
    let warm = Group {
        tag: "w",
        rooms: 1,
        publishers: 1,
        subscribers: 1,
        load: Arc::new(Load {
            frames_per_s: 100,
            video_bytes,
            streams: 2,
        }),
    };
    let tasks = warm.join(&signal, &Arc::new(Counters::default())).await?;
    warm.leave(&signal).await?;
    tasks.into_iter().for_each(|t| t.abort());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle = usage(&signal, &mut control).await?;

    let counters = Arc::new(Counters::default());
    let clients = Group {
        tag: "",
        rooms,
        publishers,
        subscribers,
        load,
    };
    clients.join(&signal, &counters).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let connected = usage(&signal, &mut control).await?;

    signal.send("mark", "-", "");
    expect(&mut control, "marked").await?;
    let (client_cpu0, _) = own_usage();
    let (sent0, received0) = (
        counters.sent.load(Ordering::Relaxed),
        counters.received.load(Ordering::Relaxed),
    );
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let sent = counters.sent.load(Ordering::Relaxed) - sent0;
    counters.sending.store(false, Ordering::Relaxed);
    let wall = t0.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let received = counters.received.load(Ordering::Relaxed) - received0;
    let client_cpu = own_usage().0 - client_cpu0;
    let run = usage(&signal, &mut control).await?;
    if counters.failed.load(Ordering::Relaxed) {
        return Err("a connection failed during the run".into());
    }
    if received == 0 || sent == 0 {
        return Err(format!("nothing forwarded during the run ({sent} sent)").into());
    }

    let expected = sent * subscribers as u64;
    let participants = (rooms * (publishers + subscribers)) as f64;
    let sfu_cpu = run.field("cpu");
    let per_participant = |u: &Usage| (u.field("rss") - idle.field("rss")) / participants;
    println!(
        "capacity: {rooms} room(s) of {publishers} publishers x {subscribers} subscribers, {frames_per_s} frames/s each (video {video_bytes} B + audio 60 B), {seconds} s"
    );
    println!(
        "  forwarded: {received} of {expected} packets ({:.3}% loss), {:.0} packets/s",
        100.0 * (1.0 - received as f64 / expected.max(1) as f64).max(0.0),
        received as f64 / wall
    );
    println!(
        "  SFU CPU: {sfu_cpu:.2} s over {wall:.2} s = {:.2} cores; forwarded packets/s per SFU core: {:.0}",
        sfu_cpu / wall,
        received as f64 / sfu_cpu.max(0.01)
    );
    if workers > 1 {
        println!(
            "  SFU threads: the busiest used {:.2} s of the {sfu_cpu:.2} s ({workers} workers)",
            run.field("busiest")
        );
    }
    println!(
        "  SFU-added delay ({} packets, arrival to sendmmsg): p50 {} us, p99 {} us, p99.9 {} us, max {} us",
        run.field("delayed"),
        run.field("p50"),
        run.field("p99"),
        run.field("p999"),
        run.field("max")
    );
    println!(
        "  SFU RSS: {} KiB idle (after a first pair came and went); per participant {:.0} KiB connected, {:.0} KiB after the run",
        idle.field("rss"),
        per_participant(&connected),
        per_participant(&run)
    );
    let heap_per_participant = |u: &Usage| (u.field("heap") - idle.field("heap")) / participants;
    println!(
        "  SFU heap in use (malloc): per participant {:.0} KiB connected, {:.0} KiB after the run; {} KiB free in the allocator",
        heap_per_participant(&connected),
        heap_per_participant(&run),
        run.field("free")
    );
    println!(
        "  clients (this process, one thread): {:.2} cores",
        client_cpu / wall
    );
    drop(signal);
    let _ = tokio::time::timeout(Duration::from_secs(2), child.wait()).await;
    Ok(())
}

/// Participants of one kind of run; their ids start with `tag`.
struct Group {
    tag: &'static str,
    /// Rooms, each with `publishers` and `subscribers` of its own.
    rooms: usize,
    publishers: usize,
    subscribers: usize,
    load: Arc<Load>,
}

impl Group {
    /// (participant id, room, publishes?), every room's subscribers before its publishers.
    fn ids(&self) -> impl Iterator<Item = (String, String, bool)> + '_ {
        (0..self.rooms).flat_map(move |r| {
            let room = format!("{}room{r}", self.tag);
            let subs = (0..self.subscribers).map(move |i| (format!("{}r{r}s{i}", self.tag), false));
            let pubs = (0..self.publishers).map(move |i| (format!("{}r{r}p{i}", self.tag), true));
            subs.chain(pubs)
                .map(move |(pid, publishes)| (pid, room.clone(), publishes))
        })
    }

    /// Joins everyone (subscribers first), starts their clients and sends at the full rate
    /// until every subscriber receives every stream.
    async fn join(
        &self,
        signal: &Signal,
        counters: &Arc<Counters>,
    ) -> Res<Vec<tokio::task::JoinHandle<()>>> {
        let mut tasks = Vec::new();
        for (pid, room, publisher) in self.ids() {
            let mut lines = signal.route(&pid);
            signal.send("join", &pid, &room);
            expect(&mut lines, "joined").await?;
            let conn = Conn::new().await?;
            let (signal, counters, load) = (signal.clone(), counters.clone(), self.load.clone());
            tasks.push(if publisher {
                tokio::spawn(conn.publish(pid, lines, signal, counters, load))
            } else {
                tokio::spawn(conn.subscribe(pid, lines, signal, counters, load))
            });
        }
        counters.sending.store(true, Ordering::Relaxed);
        let deadline = Instant::now() + Duration::from_secs(30);
        while counters.complete.load(Ordering::Relaxed) < self.rooms * self.subscribers
            || counters.publishing.load(Ordering::Relaxed) < self.rooms * self.publishers
        {
            if counters.failed.load(Ordering::Relaxed) || Instant::now() > deadline {
                return Err("the participants did not all connect and receive within 30 s".into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(tasks)
    }

    /// Everyone leaves the SFU.
    async fn leave(&self, signal: &Signal) -> Res<()> {
        for (pid, ..) in self.ids() {
            let mut lines = signal.route(&pid);
            signal.send("leave", &pid, "");
            expect(&mut lines, "left").await?;
        }
        Ok(())
    }
}

/// The SFU's `usage` line, parsed.
struct Usage(HashMap<String, f64>);

impl Usage {
    fn field(&self, name: &str) -> f64 {
        self.0.get(name).copied().unwrap_or(0.0)
    }
}

async fn usage(signal: &Signal, control: &mut mpsc::UnboundedReceiver<String>) -> Res<Usage> {
    signal.send("usage", "-", "");
    let line = expect(control, "usage").await?;
    Ok(Usage(
        line.split(' ')
            .filter_map(|kv| kv.split_once('='))
            .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
            .collect(),
    ))
}

/// The next line, which must start with `verb`.
async fn expect(rx: &mut mpsc::UnboundedReceiver<String>, verb: &str) -> Res<String> {
    let line = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .map_err(|_| format!("no {verb} from the SFU within 10 s"))?
        .ok_or("the SFU process ended")?;
    if words(&line).0 != verb {
        return Err(format!("expected {verb}, got: {line}").into());
    }
    Ok(line)
}
