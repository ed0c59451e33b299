//! The thin adapter around one `rtc` peer connection: how it is built (codecs, interceptors,
//! ICE-lite credentials, our candidates) and how its output reaches the sockets.
//!
//! Everything `rtc`-specific about construction lives here, so swapping the core (str0m is the
//! documented fallback) stays confined to this file and the worker's event handling.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtc::dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use std::sync::atomic::{AtomicU64, Ordering};

use rtc::interceptor::{
    BandwidthEstimator, CongestionControlBuilder, EstimatorStats, Gcc, NackGeneratorBuilder,
    PacketReport, ReceiverReportBuilder, Registry, SenderReportBuilder, Slot,
};
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::interceptor_registry::{
    configure_simulcast_extension_headers, configure_twcc_receiver_only, configure_twcc_sender_only,
};
use rtc::peer_connection::configuration::media_engine::MediaEngine;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::transport::{CandidateConfig, CandidateHostConfig, RTCIceCandidate};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtp_transceiver::rtp_sender::{RTCPFeedback, TYPE_RTCP_FB_NACK};
use rtc::rtp_transceiver::rtp_sender::{RTCRtpHeaderExtensionCapability, RtpCodecKind};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportProtocol};

use crate::Pc;
use crate::error::Result;
use crate::interceptors::{FeedbackTap, ReadLink, RridRtxUnwrap};
use crate::net::outbox::Outbox;
use crate::net::router::{ConnId, Router};

/// What our host candidates advertise.
#[derive(Debug, Clone)]
pub(crate) struct Candidates {
    pub udp_port: u16,
    pub tcp_port: Option<u16>,
    /// Advertised addresses (public IPs, else the bound one).
    pub ips: Vec<IpAddr>,
}

/// Where our candidates point and how datagrams leave.
pub(crate) struct Transport {
    pub udp: Arc<tokio::net::UdpSocket>,
    pub candidates: Candidates,
    pub router: Arc<Router>,
}

impl Transport {
    /// The local address the ICE agent knows for a remote address: our advertised candidate of
    /// the same family, so the agent finds its local candidate even behind NAT 1:1.
    pub fn local_for(&self, peer: SocketAddr, proto: TransportProtocol) -> SocketAddr {
        let c = &self.candidates;
        let ip = c
            .ips
            .iter()
            .copied()
            .find(|ip| ip.is_ipv4() == peer.is_ipv4())
            .or_else(|| c.ips.first().copied())
            .unwrap_or(peer.ip());
        let port = match proto {
            TransportProtocol::TCP => c.tcp_port.unwrap_or(c.udp_port),
            _ => c.udp_port,
        };
        SocketAddr::new(ip, port)
    }

    /// Sends one datagram; a full socket buffer drops it, as the network would.
    #[inline]
    pub fn send(&self, msg: &TaggedBytesMut) {
        let peer = msg.transport.peer_addr;
        match msg.transport.transport_protocol {
            TransportProtocol::UDP => {
                let _ = self.udp.try_send_to(&msg.message, peer);
            }
            TransportProtocol::TCP => {
                if let Some(w) = self.router.tcp_writer(&peer) {
                    let _ = w.try_send(bytes::Bytes::copy_from_slice(&msg.message));
                }
            }
            _ => {}
        }
    }
}

/// One peer connection and what the worker tracks about it.
pub(crate) struct Peer {
    pub pc: RTCPeerConnection,
    pub conn: ConnId,
    pub kind: Pc,
    /// Our current ICE ufrag, once a local description exists (changes on ICE restart). The
    /// core generates credentials itself: pinning them would make restarts reuse them.
    pub ufrag: String,
    pub connected: bool,
    /// Since when the connection could connect: both descriptions applied. The connect
    /// timeout counts from here, so an unanswered subscribe offer is not a failure.
    pub negotiated_at: Option<Instant>,
    /// Send-side bandwidth estimate (GCC over TWCC) in bits per second; subscribe side only.
    pub estimate: Option<Arc<AtomicU64>>,
}

impl Peer {
    /// Builds a peer connection in ICE-lite mode with our credentials and candidates.
    pub fn new(conn: ConnId, kind: Pc, candidates: &Candidates, now: Instant) -> Result<Self> {
        let mut media_engine = MediaEngine::default();
        media_engine.register_default_codecs()?;
        // Publishers' audio levels drive active-speaker detection.
        media_engine.register_header_extension(
            RTCRtpHeaderExtensionCapability {
                uri: rtc::sdp::extmap::AUDIO_LEVEL_URI.to_owned(),
            },
            RtpCodecKind::Audio,
            None,
        )?;
        let (registry, estimate) = interceptors(kind, &mut media_engine)?;

        let setting_engine = SettingEngineBuilder::new()
            // ICE-lite: we never send checks, so every STUN packet we get is a request carrying
            // USERNAME, which is what lets one socket route by ufrag.
            .with_lite(true)
            .with_srtp_protection_profiles(vec![
                SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm,
                SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80,
            ])
            .with_ice_timeouts(
                Some(Duration::from_secs(5)),
                Some(Duration::from_secs(15)),
                Some(Duration::from_secs(2)),
            )
            .build();

        let mut pc = RTCPeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_setting_engine(setting_engine)
            .with_media_engine(media_engine)
            .with_interceptor_registry(registry)
            .build(now)?;
        add_local_candidates(&mut pc, candidates)?;
        Ok(Self {
            pc,
            conn,
            kind,
            ufrag: String::new(),
            connected: false,
            negotiated_at: None,
            estimate,
        })
    }

    /// Hands everything the connection has queued to the outbox.
    #[inline]
    pub fn flush(&mut self, out: &mut Outbox) {
        while let Some(msg) = self.pc.poll_write() {
            out.push(msg);
        }
    }

    /// Our ufrag as written in the current local description (it changes on ICE restart).
    pub fn local_ufrag(&self) -> Option<String> {
        let desc = self.pc.local_description()?;
        desc.sdp
            .lines()
            .find_map(|l| l.strip_prefix("a=ice-ufrag:"))
            .map(|s| s.trim().to_owned())
    }
}

/// Each connection carries media one way only, so each gets only the links for its direction:
/// every link is one more hop for every packet. Both negotiate NACK, transport-wide CC and the
/// simulcast header extensions.
///
/// - publish (we receive): TWCC feedback and receiver reports for the publisher's estimate,
///   NACKs for its losses, and browsers' simulcast RTX restored to media first of all;
/// - subscribe (we send): TWCC numbering and a send-side estimate (GCC) for layer selection,
///   sender reports, and subscribers' PLI/FIR/NACK handed up to the room (which answers NACKs
///   from its shared cache). No pacer: forwarding keeps the publisher's pacing.
fn interceptors(
    kind: Pc,
    media_engine: &mut MediaEngine,
) -> Result<(Registry, Option<Arc<AtomicU64>>)> {
    for parameter in ["", "pli"] {
        media_engine.register_feedback(
            RTCPFeedback {
                typ: TYPE_RTCP_FB_NACK.to_owned(),
                parameter: parameter.to_owned(),
            },
            RtpCodecKind::Video,
        );
    }
    configure_simulcast_extension_headers(media_engine)?;
    Ok(match kind {
        Pc::Publish => {
            let registry = configure_twcc_receiver_only(Registry::new(), media_engine)?
                .with(Slot::ReceiverReport, ReceiverReportBuilder::new().build())
                .with(Slot::NackGenerator, NackGeneratorBuilder::new().build())
                // Below every slot `rtc` uses: the NACK generator and the reports must see a
                // repair as the packet it repairs.
                .with(Slot::from(500), ReadLink::<RridRtxUnwrap>::default());
            (registry, None)
        }
        Pc::Subscribe => {
            let shared = Arc::new(AtomicU64::new(0));
            let estimator = SharedEstimate::new(Gcc::default(), shared.clone());
            let registry = configure_twcc_sender_only(Registry::new(), media_engine)?
                .with(
                    Slot::CongestionControl,
                    CongestionControlBuilder::new(estimator).build(),
                )
                .with(Slot::SenderReport, SenderReportBuilder::new().build())
                .with(Slot::from(14_000), ReadLink::<FeedbackTap>::default());
            (registry, Some(shared))
        }
    })
}

/// Host candidates for every advertised address: UDP on the shared port, passive TCP on the
/// shared ICE-TCP port.
fn add_local_candidates(pc: &mut RTCPeerConnection, t: &Candidates) -> Result<()> {
    for ip in &t.ips {
        let mut configs = vec![CandidateHostConfig {
            base_config: CandidateConfig {
                network: "udp".to_owned(),
                address: ip.to_string(),
                port: t.udp_port,
                component: 1,
                ..Default::default()
            },
            ..Default::default()
        }];
        if let Some(port) = t.tcp_port {
            configs.push(CandidateHostConfig {
                base_config: CandidateConfig {
                    network: "tcp".to_owned(),
                    address: ip.to_string(),
                    port,
                    component: 1,
                    ..Default::default()
                },
                tcp_type: rtc::ice::tcp_type::TcpType::Passive,
            });
        }
        for config in configs {
            let candidate = config.new_candidate_host()?;
            pc.add_local_candidate(RTCIceCandidate::from(&candidate).to_json()?)?;
        }
    }
    Ok(())
}

/// Random non-zero 32-bit value (SSRCs).
pub(crate) fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    u32::from_be_bytes(b).max(1)
}

/// Wraps an estimator and publishes its target bitrate where the worker can read it.
struct SharedEstimate<E> {
    inner: E,
    out: Arc<AtomicU64>,
}

impl<E: BandwidthEstimator> SharedEstimate<E> {
    fn new(inner: E, out: Arc<AtomicU64>) -> Self {
        out.store(inner.target_bitrate() as u64, Ordering::Relaxed);
        Self { inner, out }
    }

    fn publish(&self) {
        self.out
            .store(self.inner.target_bitrate() as u64, Ordering::Relaxed);
    }
}

impl<E: BandwidthEstimator> BandwidthEstimator for SharedEstimate<E> {
    fn on_reports(&mut self, now: Instant, reports: &[PacketReport]) {
        self.inner.on_reports(now, reports);
        self.publish();
    }

    fn target_bitrate(&self) -> f64 {
        self.inner.target_bitrate()
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.inner.handle_timeout(now);
        self.publish();
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.inner.poll_timeout()
    }

    fn stats(&self) -> EstimatorStats {
        self.inner.stats()
    }
}
