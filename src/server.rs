//! Starting and stopping the server: open the store, load secrets, bind, serve (HTTP or HTTPS), and
//! shut down gracefully on SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum_server::Handle;
use tokio::task::JoinHandle;

use crate::app::{App, AppState};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::keys::Secrets;
use crate::store::Store;

/// A server that is up: where it listens, and how to stop it.
#[derive(Debug)]
pub struct Running {
    /// The bound HTTP(S) address (the real port when the config asked for port 0).
    pub addr: SocketAddr,
    /// The shared state (tests use it to reach the store).
    pub app: AppState,
    handle: Handle<SocketAddr>,
    task: JoinHandle<std::io::Result<()>>,
    /// The embedded TURN server, when on (its bound address is `app.config.turn_listen`).
    turn: Option<crate::turn::TurnServer>,
}

impl Running {
    /// Asks the server to stop accepting and finish in-flight requests within `grace`.
    pub fn shutdown(&self, grace: Duration) {
        self.handle.graceful_shutdown(Some(grace));
        if let Some(turn) = &self.turn {
            turn.stop();
        }
    }

    /// Waits until the server has stopped.
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await??;
        if let Some(turn) = self.turn {
            turn.join().await;
        }
        self.app.store.close().await;
        Ok(())
    }
}

/// Opens everything the configuration names and starts serving in the background.
pub async fn start(mut config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Running> {
    install_crypto_provider();
    // Install the metrics recorder before the first request, or its counts would be dropped.
    crate::http::health::prometheus();
    let store = Store::open(&config.database_url).await?;
    let orphaned = store.close_orphaned_calls(clock.now_ms()).await?;
    if orphaned > 0 {
        tracing::warn!(
            calls = orphaned,
            "closed calls left open by the previous run"
        );
    }
    let (sfu, sfu_ips) = start_sfu(&mut config).await?;
    let turn_settings = crate::turn::prepare(&mut config)?;
    let secrets = Secrets::load(&config)?;
    // Dropping the TURN server stops it, so an early return below leaves nothing running.
    let turn = crate::turn::start(
        &mut config,
        &turn_settings,
        &secrets.turn,
        clock.clone(),
        &sfu_ips,
    )
    .await?;
    tracing::info!(backend = ?store.backend(), keys = ?secrets.ring.kids(), "store ready");
    let app: AppState = Arc::new(App::new(config, store, secrets, clock, Some(sfu))?);
    spawn_housekeeping(app.clone());

    let router =
        crate::http::router(app.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let handle: Handle<SocketAddr> = Handle::new();
    let listener = std::net::TcpListener::bind(app.config.listen)
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", app.config.listen))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let task = match &app.config.tls {
        Some((cert, key)) => {
            let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key).await?;
            let server = axum_server::from_tcp_rustls(listener, tls)?.handle(handle.clone());
            tokio::spawn(async move { server.serve(router).await })
        }
        None => {
            let server = axum_server::from_tcp(listener)?.handle(handle.clone());
            tokio::spawn(async move { server.serve(router).await })
        }
    };
    let scheme = if app.config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    tracing::info!("listening on {scheme}://{addr}");
    Ok(Running {
        addr,
        app,
        handle,
        task,
        turn,
    })
}

/// Starts the SFU on the configured media addresses and writes the bound ones back into the config
/// (port 0 in tests; the TURN relay policy and the logs want the real ports). Returns the SFU and
/// the addresses its candidates advertise, which are what TURN may relay to.
async fn start_sfu(
    config: &mut Config,
) -> anyhow::Result<(mescon_media::Sfu, Vec<std::net::IpAddr>)> {
    let mut sfu_config = mescon_media::SfuConfig::new(config.media_udp);
    sfu_config.ice_tcp = config.ice_tcp;
    sfu_config.public_ips = advertised_ips(config);
    sfu_config.limits.max_subscriber_bitrate = config.call_max_bitrate;
    let sfu = mescon_media::Sfu::start(sfu_config.clone())
        .await
        .map_err(|e| anyhow::anyhow!("cannot start the SFU on {}: {e}", config.media_udp))?;
    config.media_udp = sfu.udp_addr();
    config.ice_tcp = sfu.ice_tcp_addr();
    tracing::info!(udp = %sfu.udp_addr(), ice_tcp = ?sfu.ice_tcp_addr(), advertised = ?sfu_config.public_ips, "SFU ready");
    Ok((sfu, sfu_config.public_ips))
}

/// The addresses ICE candidates name: the configured public IPs, else, for a wildcard bind, this
/// host's IPv4 addresses (non-loopback first: browsers ignore loopback candidates by default).
fn advertised_ips(config: &Config) -> Vec<std::net::IpAddr> {
    if !config.public_ips.is_empty() {
        return config.public_ips.clone();
    }
    let bound = config.media_udp.ip();
    if !bound.is_unspecified() {
        return vec![bound];
    }
    let mut ips: Vec<std::net::IpAddr> = if_addrs::get_if_addrs()
        .map(|list| {
            list.into_iter()
                .map(|i| i.ip())
                .filter(|ip| ip.is_ipv4() && !ip.is_loopback())
                .collect()
        })
        .unwrap_or_default();
    ips.sort();
    ips.dedup();
    ips.push(std::net::IpAddr::from([127, 0, 0, 1]));
    ips
}

/// Runs the server until SIGINT or SIGTERM, then drains for up to 10 s.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let running = start(config, Arc::new(SystemClock)).await?;
    shutdown_signal().await;
    tracing::info!("shutting down");
    running.shutdown(Duration::from_secs(10));
    running.wait().await
}

/// Makes ring the process-wide rustls provider (HTTPS serving and the webhook client need one).
/// Idempotent: a provider already installed is kept.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn spawn_housekeeping(app: AppState) {
    let weak = Arc::downgrade(&app);
    tokio::spawn(async move {
        // Often enough for call timeouts to be punctual. Forgetting idle rate-limit keys walks
        // every key, so it runs only once a minute.
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        for n in 0u64.. {
            tick.tick().await;
            let Some(app) = weak.upgrade() else { break };
            if n % 120 == 0 {
                app.limits.sweep();
            }
            crate::calls::sweep(&app).await;
        }
    });
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(cause = %e, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(cause = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
