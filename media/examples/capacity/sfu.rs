//! The child process: one SFU on one thread, driven by lines on stdin, answering on stdout.

use super::*;

/// CPU seconds (user + system) in a `/proc/.../stat` file: of a process or of one thread.
fn cpu_seconds(stat: &std::path::Path) -> f64 {
    let stat = std::fs::read_to_string(stat).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (tick(11) + tick(12)) as f64 / 100.0
}

/// CPU seconds (user + system) of this whole process, and its RSS in KiB.
pub(crate) fn own_usage() -> (f64, u64) {
    let cpu = cpu_seconds("/proc/self/stat".as_ref());
    let rss = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0);
    (cpu, rss)
}

/// CPU seconds of each thread of this process, by thread id.
fn thread_usage() -> HashMap<String, f64> {
    let mut out = HashMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for task in tasks.flatten() {
        let cpu = cpu_seconds(&task.path().join("stat"));
        out.insert(task.file_name().to_string_lossy().into_owned(), cpu);
    }
    out
}

/// The child: one SFU with `workers` workers, driven by lines on stdin, answering on stdout.
pub(crate) async fn serve(workers: usize) -> Res<()> {
    use mescon_media::{Event, Pc, Sfu, SfuConfig};
    let mut cfg = SfuConfig::new("127.0.0.1:0".parse()?);
    cfg.workers = workers;
    cfg.limits.max_participants = 100;
    cfg.limits.max_tracks = 200;
    let sfu = Sfu::start(cfg).await?;
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        while let Some(mut line) = out_rx.recv().await {
            line.push('\n');
            if stdout.write_all(line.as_bytes()).await.is_err() || stdout.flush().await.is_err() {
                break;
            }
        }
    });
    let _ = out_tx.send(format!("ready {}", sfu.udp_addr().port()));

    let mut handles = HashMap::new();
    let mut mark = (0.0, sfu.stats().await.forward_delay, thread_usage());
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let (verb, pid, rest) = words(&line);
        match verb {
            "join" => {
                let (handle, mut events) = sfu.join(rest, pid).await?;
                let (tx, id) = (out_tx.clone(), pid.to_string());
                tokio::spawn(async move {
                    while let Some(event) = events.recv().await {
                        let line = match event {
                            Event::SubscribeOffer { sdp } => {
                                format!("offer {id} {}", escape(&sdp))
                            }
                            Event::Failed { pc } => format!("failed {id} {pc:?}"),
                            Event::Connected { pc: Pc::Publish } => format!("up {id} publish"),
                            _ => continue,
                        };
                        let _ = tx.send(line);
                    }
                });
                handles.insert(pid.to_string(), handle);
                let _ = out_tx.send(format!("joined {pid}"));
            }
            "publish" | "answer" => {
                let Some(h) = handles.get(pid) else {
                    let _ = out_tx.send(format!("error {pid} unknown participant"));
                    continue;
                };
                let sdp = unescape(rest);
                let reply = if verb == "publish" {
                    h.publish_offer(sdp)
                        .await
                        .map(|a| format!("answer {pid} {}", escape(&a)))
                } else {
                    h.subscribe_answer(sdp).await.map(|()| format!("ok {pid}"))
                };
                let _ = out_tx.send(reply.unwrap_or_else(|e| format!("error {pid} {e}")));
            }
            "leave" => {
                if let Some(h) = handles.remove(pid) {
                    let _ = h.leave().await;
                }
                let _ = out_tx.send(format!("left {pid}"));
            }
            "mark" => {
                mark = (
                    own_usage().0,
                    sfu.stats().await.forward_delay,
                    thread_usage(),
                );
                let _ = out_tx.send("marked".into());
            }
            "usage" => {
                let (cpu, rss) = own_usage();
                // With several workers: whether the work really spread over their threads.
                let busiest = thread_usage()
                    .iter()
                    .map(|(tid, cpu)| cpu - mark.2.get(tid).copied().unwrap_or(0.0))
                    .fold(0.0, f64::max);
                let delay = sfu.stats().await.forward_delay.since(&mark.1);
                let us = |q: f64| delay.quantile(q).map_or(0, |d| d.as_micros());
                // SAFETY: mallinfo2 only reads the allocator's counters.
                let heap = unsafe { libc::mallinfo2() };
                let _ = out_tx.send(format!(
                    "usage cpu={:.2} busiest={busiest:.2} rss={rss} heap={} free={} delayed={} p50={} p99={} p999={} max={}",
                    cpu - mark.0,
                    heap.uordblks / 1024 + heap.hblkhd / 1024,
                    heap.fordblks / 1024,
                    delay.count(),
                    us(0.5),
                    us(0.99),
                    us(0.999),
                    us(1.0)
                ));
            }
            _ => {
                let _ = out_tx.send(format!("error - unknown command {verb}"));
            }
        }
    }
    Ok(())
}
