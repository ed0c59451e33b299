//! Bounded loopback load harness: K publishers and S subscribers in one room through a real
//! SFU (UDP, DTLS, SRTP), for a fixed time, then a report. Stops by itself.
//!
//! ```text
//! cargo run -p mescon-media --release --example load -- [publishers] [subscribers] [pps] [seconds] [video_bytes]
//! ```
//! Defaults: 2 publishers, 4 subscribers, 100 frames/s (one video and one audio packet per
//! frame), 10 s, 1000-byte video. The SFU runs on its own single-threaded runtime (thread name
//! `sfu`) so its CPU time can be read from /proc; the client peers run on another.

#[path = "../tests/common/mod.rs"]
mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use mescon_media::{Sfu, SfuConfig};
use tokio::sync::mpsc;

/// Live heap bytes allocated on the SFU's runtime thread, wherever they are freed: what the SFU
/// itself holds, apart from the in-process clients (RSS counts both).
static SFU_HEAP: AtomicI64 = AtomicI64::new(0);

thread_local! {
    static ON_SFU: Cell<bool> = const { Cell::new(false) };
}

/// The system allocator with a header on each block saying whether the SFU thread allocated it.
struct Attributing;

/// Header size for a layout: at least 16 bytes, and a multiple of the alignment.
fn header(layout: Layout) -> usize {
    layout.align().max(16)
}

// SAFETY: every block is the system allocator's, `header(layout)` bytes larger than asked, with
// the caller's pointer that many bytes in; the byte before it records who allocated it.
unsafe impl GlobalAlloc for Attributing {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let h = header(layout);
        let Ok(outer) = Layout::from_size_align(layout.size() + h, layout.align().max(16)) else {
            return std::ptr::null_mut();
        };
        // SAFETY: `outer` has a non-zero size.
        let base = unsafe { System.alloc(outer) };
        if base.is_null() {
            return base;
        }
        let sfu = ON_SFU.try_with(Cell::get).unwrap_or(false);
        if sfu {
            SFU_HEAP.fetch_add(layout.size() as i64, Ordering::Relaxed);
        }
        // SAFETY: `h` >= 16 bytes lie before the returned pointer inside the block.
        unsafe {
            *base.add(h - 1) = sfu as u8;
            base.add(h)
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let h = header(layout);
        // SAFETY: `ptr` came from `alloc` above with the same layout.
        unsafe {
            if *ptr.sub(1) == 1 {
                SFU_HEAP.fetch_sub(layout.size() as i64, Ordering::Relaxed);
            }
            let outer =
                Layout::from_size_align_unchecked(layout.size() + h, layout.align().max(16));
            System.dealloc(ptr.sub(h), outer);
        }
    }
}

#[global_allocator]
static ALLOC: Attributing = Attributing;

fn sfu_heap_kib() -> f64 {
    SFU_HEAP.load(Ordering::Relaxed) as f64 / 1024.0
}

fn arg(i: usize, default: u64, max: u64) -> u64 {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
        .clamp(1, max)
}

/// Resident set size of this process, in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU seconds used by threads named `name` (user + system).
fn cpu_seconds(name: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    let mut ticks = 0u64;
    for t in tasks.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
        // Fields after the parenthesised command: state is field 3, utime 14, stime 15.
        let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = after.split_whitespace().collect();
        ticks += f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        ticks += f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    }
    ticks as f64 / 100.0
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let publishers = arg(1, 2, 20) as usize;
    let subscribers = arg(2, 4, 50) as usize;
    let pps = arg(3, 100, 1000) as u32;
    let seconds = arg(4, 10, 60) as u32;
    let video_bytes = arg(5, 1000, 1200) as usize;

    // Memory of a connection pair without any sockets or client stack: 50 subscriber legs,
    // each an SFU-side and a client-side `rtc` connection, connected in memory.
    let rss_before = rss_kib();
    let legs = mescon_media::bench::ForwardBench::new(
        50,
        rtc::rtp_transceiver::rtp_sender::RtpCodecKind::Video,
    )
    .expect("in-memory legs");
    let connected_only = rss_kib().saturating_sub(rss_before) as f64 / 50.0;
    let mut packet = legs.packet(0, 1000);
    let mut legs = legs;
    for _ in 0..2000 {
        packet.header.sequence_number = packet.header.sequence_number.wrapping_add(1);
        legs.forward(&packet);
    }
    let per_leg = rss_kib().saturating_sub(rss_before) as f64 / 50.0;
    drop(legs);

    let sfu_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("sfu")
        .on_thread_start(|| ON_SFU.with(|c| c.set(true)))
        .enable_all()
        .build()
        .expect("sfu runtime");
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("client")
        .enable_all()
        .build()
        .expect("client runtime");
    let mut cfg = SfuConfig::new("127.0.0.1:0".parse().expect("addr"));
    cfg.workers = 1;
    cfg.limits.max_participants = 100;
    // MESCON_LOAD_BATCH=0 reads one datagram per system call, for A/B runs.
    cfg.batched_udp = std::env::var("MESCON_LOAD_BATCH").map_or(true, |v| v != "0");
    let sfu = Arc::new(sfu_rt.block_on(Sfu::start(cfg)).expect("sfu"));
    let _ = epoch();

    // Let the SFU's tasks start and allocate what they hold for any number of participants
    // (the batched UDP reader's GRO buffers are ~2 MiB), so it is not charged to participants.
    std::thread::sleep(Duration::from_millis(300));
    println!(
        "  SFU heap idle (sockets, receive buffers, no participants): {:.0} KiB",
        sfu_heap_kib()
    );

    client_rt.block_on(async move {
        let rss0 = rss_kib();
        let heap0 = sfu_heap_kib();
        let (log_tx, _log) = mpsc::unbounded_channel();
        let mut subs = Vec::new();
        for i in 0..subscribers {
            let (h, ev) = sfu.join("load", &format!("s{i}")).await.expect("join");
            let c = Arc::new(Client::new(false).await);
            auto_answer(h.clone(), c.clone(), ev, log_tx.clone());
            subs.push((h, c));
        }
        let mut pubs = Vec::new();
        for i in 0..publishers {
            let (h, _ev) = sfu.join("load", &format!("p{i}")).await.expect("join");
            pubs.push((Arc::new(Publisher::connect(&h, false).await), h));
        }
        // Warm up until every subscriber receives every publisher's video.
        let ready = Instant::now();
        loop {
            send_all(&pubs, 10, Duration::from_millis(10), 200).await;
            let all = subs
                .iter()
                .all(|(_, c)| c.seen().keys().filter(|k| k.ends_with(":video")).count() == publishers);
            if all || ready.elapsed() > Duration::from_secs(20) {
                break;
            }
        }
        let rss1 = rss_kib();
        let heap1 = sfu_heap_kib();
        let delay0 = sfu.stats().await.forward_delay;
        let start_ns = now_ns();
        let (cpu0, t0) = (cpu_seconds("sfu"), Instant::now());
        let frames = pps * seconds;
        let interval = Duration::from_micros(1_000_000 / pps as u64);
        send_all(&pubs, frames, interval, video_bytes).await;
        let wall = t0.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let cpu = cpu_seconds("sfu") - cpu0;
        let heap2 = sfu_heap_kib();
        let delay = sfu.stats().await.forward_delay.since(&delay0);

        let mut received = 0usize;
        let mut latencies = Vec::new();
        for (_, c) in &subs {
            for packets in c.seen().values() {
                // Packets stamped after the start, each sequence number once (RTX repairs
                // arrive under the original number).
                let mut seqs = std::collections::HashSet::new();
                for p in packets {
                    if let Some(sent) = p.sent_ns.filter(|s| *s >= start_ns)
                        && seqs.insert(p.seq)
                    {
                        latencies.push(p.recv_ns.saturating_sub(sent));
                    }
                }
                received += seqs.len();
            }
        }
        latencies.sort_unstable();
        let expected = publishers * subscribers * frames as usize * 2;
        let forwarded_pps = received as f64 / wall;
        println!("load: {publishers} publishers x {subscribers} subscribers, {pps} frames/s (video {video_bytes} B + audio 60 B), {seconds} s");
        println!("  forwarded packets: {received} of {expected} expected ({:.3}% loss)", 100.0 * (1.0 - received as f64 / expected as f64));
        println!("  forwarded packets/s: {forwarded_pps:.0}; SFU CPU {cpu:.2} s over {wall:.2} s wall = {:.2} cores", cpu / wall);
        if cpu > 0.0 {
            println!("  forwarded packets/s per SFU core: {:.0}", received as f64 / cpu);
        }
        println!(
            "  publisher->subscriber latency through the SFU (includes client stacks): p50 {:.0} us, p90 {:.0} us, p99 {:.0} us, max {:.0} us",
            percentile(&latencies, 0.5) as f64 / 1000.0,
            percentile(&latencies, 0.9) as f64 / 1000.0,
            percentile(&latencies, 0.99) as f64 / 1000.0,
            percentile(&latencies, 1.0) as f64 / 1000.0
        );
        let us = |q: f64| delay.quantile(q).map_or(0, |d| d.as_micros());
        println!(
            "  SFU-added delay (socket read to sendmmsg, {} packets): p50 {} us, p99 {} us, p99.9 {} us, max {} us",
            delay.count(),
            us(0.5),
            us(0.99),
            us(0.999),
            us(1.0)
        );
        println!(
            "  RSS: {} KiB before, {} KiB connected: {:.0} KiB per participant (SFU side plus in-process client peers)",
            rss0,
            rss1,
            (rss1.saturating_sub(rss0)) as f64 / (publishers + subscribers) as f64
        );
        let participants = (publishers + subscribers) as f64;
        println!(
            "  SFU heap (allocated on the SFU thread, still live): {:.0} KiB per participant connected, {:.0} KiB after the run",
            (heap1 - heap0) / participants,
            (heap2 - heap0) / participants
        );
        println!(
            "  in memory: {connected_only:.0} KiB per connected pair, {per_leg:.0} KiB after 2000 packets each (SFU side + client side, no sockets)"
        );
        for (h, c) in &subs {
            let _ = h.leave().await;
            let _ = c.pc.close().await;
        }
        for (p, h) in &pubs {
            let _ = h.leave().await;
            let _ = p.client.pc.close().await;
        }
    });
}

/// Every publisher sends `frames` frames at once, each on its own task.
async fn send_all(
    pubs: &[(Arc<Publisher>, mescon_media::ParticipantHandle)],
    frames: u32,
    interval: Duration,
    video_bytes: usize,
) {
    let mut tasks = tokio::task::JoinSet::new();
    for (p, _) in pubs {
        let p = p.clone();
        tasks.spawn(async move { p.send_sized(frames, 50, interval, video_bytes).await });
    }
    while tasks.join_next().await.is_some() {}
}
