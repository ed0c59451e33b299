//! WebSocket load tool: starts a real `mescon` (release build) on loopback, signs in users, and drives
//! chat traffic through real WebSockets, reporting throughput, send→deliver latency and server memory.
//!
//! ```sh
//! cargo build --release && cargo run --release --example ws_load -- throughput --clients 64 --seconds 10
//! cargo run --release --example ws_load -- latency --clients 100 --rate 1000 --seconds 20
//! cargo run --release --example ws_load -- idle --sockets 10000
//! ```
//! Add `--database-url postgres://...` to run against PostgreSQL. Every run is bounded in count and
//! time, talks only to 127.0.0.1, and stops the server it started.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

#[derive(Debug)]
struct Args {
    mode: String,
    clients: usize,
    rate: u64,
    seconds: u64,
    sockets: usize,
    window: usize,
    database_url: Option<String>,
    bin: String,
}

fn parse_args() -> Args {
    let mut args = Args {
        mode: String::new(),
        clients: 64,
        rate: 1000,
        seconds: 10,
        sockets: 10_000,
        window: 32,
        database_url: None,
        bin: "target/release/mescon".into(),
    };
    if let Ok(dir) = std::env::var("CARGO_TARGET_DIR") {
        args.bin = format!("{dir}/release/mescon");
    }
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .unwrap_or_else(|| usage(&format!("{a} needs a value")))
        };
        match a.as_str() {
            "--clients" => args.clients = value().parse().unwrap_or_else(|_| usage("--clients N")),
            "--rate" => args.rate = value().parse().unwrap_or_else(|_| usage("--rate N")),
            "--seconds" => args.seconds = value().parse().unwrap_or_else(|_| usage("--seconds N")),
            "--sockets" => args.sockets = value().parse().unwrap_or_else(|_| usage("--sockets N")),
            "--window" => args.window = value().parse().unwrap_or_else(|_| usage("--window N")),
            "--database-url" => args.database_url = Some(value()),
            "--bin" => args.bin = value(),
            m if args.mode.is_empty() && !m.starts_with('-') => args.mode = m.to_string(),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    args.seconds = args.seconds.clamp(1, 300);
    args.clients = args.clients.clamp(2, 2000);
    args.sockets = args.sockets.clamp(1, 15_000);
    args
}

fn usage(why: &str) -> ! {
    eprintln!(
        "ws_load: {why}\nusage: ws_load (throughput|latency|idle) [--clients N] [--rate MSG_PER_S] [--seconds S] [--sockets N] [--window N] [--database-url URL] [--bin PATH]"
    );
    std::process::exit(2)
}

/// The server under test.
struct Server {
    child: Child,
    base: String,
    codes: Arc<std::sync::Mutex<HashMap<String, String>>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(args: &Args, dir: &std::path::Path) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| usage(&format!("no free port: {e}")));
        let mut cmd = Command::new(&args.bin);
        cmd.env("MESCON_LISTEN", format!("127.0.0.1:{port}"))
            .env("MESCON_DATA_DIR", dir)
            .env("MESCON_MEDIA_UDP", "127.0.0.1:0")
            .env("MESCON_ICE_TCP", "")
            .env("MESCON_TURN_LISTEN", "")
            .env("MESCON_OTP_PER_IP_HOUR", "1000000")
            .env("MESCON_OTP_PER_PHONE_HOUR", "1000")
            .env("MESCON_AUTH_PER_IP_MINUTE", "1000000")
            .env("RUST_LOG", "info,mescon::http=warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(url) = &args.database_url {
            cmd.env("DATABASE_URL", url);
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| {
            usage(&format!(
                "cannot start {} ({e}); build it with cargo build --release",
                args.bin
            ))
        });
        let codes = Arc::new(std::sync::Mutex::new(HashMap::new()));
        let stdout = child.stdout.take();
        let sink = codes.clone();
        std::thread::spawn(move || {
            let Some(stdout) = stdout else { return };
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some((_, rest)) = line.split_once("otp phone=")
                    && let Some((phone, code)) = rest.split_once(" code=")
                    && let Ok(mut c) = sink.lock()
                {
                    c.insert(phone.to_string(), code.chars().take(6).collect());
                }
            }
        });
        Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
            codes,
        }
    }

    /// CPU time the server has used so far, in seconds (user + system).
    fn cpu_secs(&self) -> f64 {
        let ticks = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .ok()
            .and_then(|s| {
                // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
                let rest = s.rsplit_once(')')?.1.to_string();
                let f: Vec<&str> = rest.split_whitespace().collect();
                Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
            })
            .unwrap_or(0);
        ticks as f64 / 100.0
    }

    fn rss_kb(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse().ok())
            })
            .unwrap_or(0)
    }

    async fn ready(&self, http: &reqwest::Client) {
        for _ in 0..400 {
            if http
                .get(format!("{}/readyz", self.base))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        usage("the server did not become ready in 10 s");
    }

    /// Signs in user `n`: (user id, access token).
    async fn login(&self, http: &reqwest::Client, n: usize) -> (String, String) {
        let phone = format!("+1201555{:04}", n % 10_000);
        let e164 = phone.clone();
        let r = http
            .post(format!("{}/api/auth/otp", self.base))
            .json(&json!({"phone": phone}))
            .send()
            .await;
        if !r.is_ok_and(|r| r.status().as_u16() == 202) {
            usage("otp request failed");
        }
        let mut code = None;
        for _ in 0..200 {
            code = self.codes.lock().ok().and_then(|mut c| c.remove(&e164));
            if code.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let code = code.unwrap_or_else(|| usage("no otp code in the server log"));
        let body: Value = match http
            .post(format!("{}/api/auth/verify", self.base))
            .json(&json!({"phone": phone, "code": code}))
            .send()
            .await
        {
            Ok(r) => r.json().await.unwrap_or(Value::Null),
            Err(e) => usage(&format!("verify: {e}")),
        };
        match (body["user"]["id"].as_str(), body["access_token"].as_str()) {
            (Some(id), Some(token)) => (id.to_string(), token.to_string()),
            _ => usage(&format!("verify answered {body}")),
        }
    }

    async fn socket(&self, token: &str) -> Ws {
        let url = format!("{}/api/ws", self.base.replacen("http", "ws", 1));
        let (mut ws, _) = match tokio_tungstenite::connect_async(url).await {
            Ok(x) => x,
            Err(e) => usage(&format!("websocket: {e}")),
        };
        let _ = ws
            .send(Message::text(
                json!({"type": "auth", "token": token}).to_string(),
            ))
            .await;
        while let Some(Ok(m)) = ws.next().await {
            if let Message::Text(t) = m
                && t.contains("\"ready\"")
            {
                return ws;
            }
        }
        usage("socket closed before ready")
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

#[tokio::main]
async fn main() {
    mescon::server::install_crypto_provider();
    let args = parse_args();
    let dir = tempfile::tempdir().unwrap_or_else(|e| usage(&format!("tempdir: {e}")));
    let server = Server::start(&args, dir.path());
    let http = reqwest::Client::new();
    server.ready(&http).await;
    let backend = if args.database_url.is_some() {
        "postgres"
    } else {
        "sqlite"
    };
    match args.mode.as_str() {
        "throughput" => throughput(&args, &server, &http, backend).await,
        "latency" => latency(&args, &server, &http, backend).await,
        "idle" => idle(&args, &server, &http).await,
        _ => usage("mode must be throughput, latency or idle"),
    }
}

/// Pairs of clients send as fast as acks allow (each keeps `window` messages in flight).
async fn throughput(args: &Args, server: &Server, http: &reqwest::Client, backend: &str) {
    let mut users = Vec::new();
    for n in 0..args.clients {
        users.push(server.login(http, n).await);
    }
    let acked = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let mut tasks = Vec::new();
    for (n, (_, token)) in users.iter().enumerate() {
        let peer = users[(n + 1) % users.len()].0.clone();
        let mut ws = server.socket(token).await;
        let acked = acked.clone();
        let window = args.window;
        tasks.push(tokio::spawn(async move {
            let mut sent = 0u64;
            let mut in_flight = 0usize;
            while Instant::now() < deadline {
                while in_flight < window {
                    let frame = json!({"type": "message.send", "to": peer, "client_id": format!("t{n}-{sent}"), "body": "x".repeat(100)});
                    if ws.send(Message::text(frame.to_string())).await.is_err() {
                        return;
                    }
                    sent += 1;
                    in_flight += 1;
                }
                match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
                    Ok(Some(Ok(Message::Text(t)))) if t.contains("\"message.ack\"") => {
                        in_flight -= 1;
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Some(Ok(_))) => {}
                    _ => return,
                }
            }
        }));
    }
    let start = Instant::now();
    let cpu_before = server.cpu_secs();
    for t in tasks {
        let _ = t.await;
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = server.cpu_secs() - cpu_before;
    let n = acked.load(Ordering::Relaxed);
    println!(
        "throughput backend={backend} clients={} window={} seconds={secs:.1} acked={n} rate={:.0} msg/s \
         server_cpu={cpu:.1}s ({:.0} msg per server CPU-second) server_rss={} MiB",
        args.clients,
        args.window,
        n as f64 / secs,
        n as f64 / cpu.max(0.01),
        server.rss_kb() / 1024
    );
}

/// A steady aggregate rate; every message carries its send time and the recipient measures delivery.
async fn latency(args: &Args, server: &Server, http: &reqwest::Client, backend: &str) {
    let mut users = Vec::new();
    for n in 0..args.clients {
        users.push(server.login(http, n).await);
    }
    let epoch = Instant::now();
    let latencies = Arc::new(Mutex::new(Vec::<u64>::new()));
    let deadline = Duration::from_secs(args.seconds);
    let per_client = Duration::from_secs_f64(args.clients as f64 / args.rate.max(1) as f64);
    let mut tasks = Vec::new();
    for (n, (_, token)) in users.iter().enumerate() {
        let peer = users[(n + 1) % users.len()].0.clone();
        let ws = server.socket(token).await;
        let (mut tx, mut rx) = ws.split();
        let latencies = latencies.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                match tokio::time::timeout(Duration::from_secs(2), rx.next()).await {
                    Ok(Some(Ok(Message::Text(t)))) => {
                        if let Ok(v) = serde_json::from_str::<Value>(&t)
                            && v["type"] == "message.new"
                            && let Some(sent) = v["message"]["body"]
                                .as_str()
                                .and_then(|b| b.parse::<u64>().ok())
                        {
                            mine.push(epoch.elapsed().as_micros() as u64 - sent);
                        }
                    }
                    Ok(Some(Ok(_))) => {}
                    _ if epoch.elapsed() > deadline => break,
                    Ok(None | Some(Err(_))) => break,
                    Err(_) => {}
                }
            }
            latencies.lock().await.extend(mine);
        }));
        let offset = per_client.mul_f64(n as f64 / args.clients as f64);
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(offset).await;
            let mut tick = tokio::time::interval(per_client);
            let mut i = 0u64;
            while epoch.elapsed() < deadline {
                tick.tick().await;
                let body = (epoch.elapsed().as_micros() as u64).to_string();
                let frame = json!({"type": "message.send", "to": peer, "client_id": format!("l{n}-{i}"), "body": body});
                if tx.send(Message::text(frame.to_string())).await.is_err() {
                    break;
                }
                i += 1;
            }
            // Keep the socket open until the receivers are done.
            tokio::time::sleep(Duration::from_secs(3)).await;
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let mut all = latencies.lock().await.clone();
    all.sort_unstable();
    println!(
        "latency backend={backend} clients={} target_rate={} delivered={} p50={:.2} ms p99={:.2} ms max={:.2} ms",
        args.clients,
        args.rate,
        all.len(),
        percentile(&all, 0.50),
        percentile(&all, 0.99),
        percentile(&all, 1.0)
    );
}

/// Opens many authenticated sockets that then sit idle; reports the server's memory per socket.
async fn idle(args: &Args, server: &Server, http: &reqwest::Client) {
    let users: Vec<(String, String)> = {
        let mut u = Vec::new();
        for n in 0..100 {
            u.push(server.login(http, n).await);
        }
        u
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = server.rss_kb();
    let mut sockets = Vec::with_capacity(args.sockets);
    let started = Instant::now();
    for i in 0..args.sockets {
        sockets.push(server.socket(&users[i % users.len()].1).await);
    }
    let open_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = server.rss_kb();
    println!(
        "idle sockets={} opened_in={open_secs:.1}s server_rss_before={} MiB after={} MiB per_socket={:.1} KB",
        sockets.len(),
        before / 1024,
        after / 1024,
        (after.saturating_sub(before)) as f64 / sockets.len() as f64
    );
}
