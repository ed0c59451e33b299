//! The thin adapter around one `rtc` peer connection: how it is built (codecs, interceptors,
//! ICE-lite credentials, our candidates) and how its output reaches the sockets.
//!
//! Everything `rtc`-specific about construction lives here, so swapping the core (str0m is the
//! documented fallback) stays confined to this file and the worker's event handling.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtc::dtls::extension::extension_use_srtp::SrtpProtectionProfile;

use rtc::interceptor::{Registry, Slot};
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::interceptor_registry::configure_simulcast_extension_headers;
use rtc::peer_connection::configuration::media_engine::MediaEngine;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::transport::{CandidateConfig, CandidateHostConfig, RTCIceCandidate};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, TYPE_RTCP_FB_NACK, TYPE_RTCP_FB_TRANSPORT_CC,
};
use rtc::rtp_transceiver::rtp_sender::{RTCRtpHeaderExtensionCapability, RtpCodecKind};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};

use crate::Pc;
use crate::bwe::MediaId;
use crate::downlink::Downlink;
use crate::error::Result;
use crate::interceptors::{FeedbackTap, ReadLink, RridRtxUnwrap, TwccInbox};
use crate::net::outbox::Outbox;
use crate::net::router::{ConnId, Router};
use crate::srtp::KeyCapture;
use crate::uplink::{SharedChain, Uplink};

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
    pub fn send(&self, to: &TransportContext, data: &[u8]) {
        match to.transport_protocol {
            TransportProtocol::UDP => {
                let _ = self.udp.try_send_to(data, to.peer_addr);
            }
            TransportProtocol::TCP => {
                if let Some(w) = self.router.tcp_writer(&to.peer_addr) {
                    let _ = w.try_send(bytes::Bytes::copy_from_slice(data));
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
    /// The crypto provider that learns the connection's SRTP keys.
    keys: Arc<KeyCapture>,
    /// Subscribe side: the TWCC feedback its chain hands up, and, once connected, the media
    /// sender built from it and our keys.
    pub twcc: Option<TwccInbox>,
    /// The negotiated transport-wide-cc extension id, learnt with the payload types.
    pub twcc_ext: Option<u8>,
    pub downlink: Option<Downlink>,
    /// Publish side: the receive chain the connection shares, and, once connected, the media
    /// receiver built from it and the remote keys.
    chain: Option<SharedChain>,
    pub uplink: Option<Uplink>,
    /// Where the connection's own datagrams (DTLS, RTCP) last went: the ICE-selected route.
    route: Option<TransportContext>,
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
        let (registry, twcc, chain) = interceptors(kind, &mut media_engine)?;
        let keys = KeyCapture::new()?;

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
            .with_crypto_provider(keys.clone())
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
            keys,
            twcc,
            twcc_ext: None,
            downlink: None,
            chain,
            uplink: None,
            route: None,
        })
    }

    /// Hands everything the connection has queued to the outbox, and keeps the media route
    /// where the connection itself sends: everything but STUN (RFC 7983: first byte 0–3) goes
    /// over the ICE-selected pair.
    #[inline]
    pub fn flush(&mut self, out: &mut Outbox) {
        while let Some(msg) = self.pc.poll_write() {
            self.learn_route(&msg);
            out.push(msg);
        }
    }

    /// Notes where a datagram of the connection's own goes, if it is not STUN.
    #[inline]
    pub fn learn_route(&mut self, msg: &TaggedBytesMut) {
        if msg.message.first().is_some_and(|b| *b > 3)
            && self.route.as_ref() != Some(&msg.transport)
        {
            self.route = Some(msg.transport);
            if let Some(d) = self.downlink.as_mut() {
                d.set_route(msg.transport);
            }
        }
    }

    /// Feeds the TWCC feedback the chain set aside to the media sender's estimate; the media
    /// packets it reports arrived are added to `arrived`.
    pub fn take_feedback(&mut self, now: Instant, arrived: &mut Vec<MediaId>) {
        let (Some(inbox), Some(link)) = (&self.twcc, self.downlink.as_mut()) else {
            return;
        };
        let feedback = inbox.lock().map(|mut f| std::mem::take(&mut *f));
        for fb in feedback.iter().flatten() {
            link.on_feedback(now, fb, arrived);
        }
    }

    /// Starts sending media ourselves once DTLS-SRTP is up: keys from the capture, the
    /// negotiated TWCC extension id, the route the handshake went over.
    pub fn start_downlink(&mut self, now: Instant) -> Result<()> {
        if self.kind != Pc::Subscribe {
            return Err(crate::Error::Srtp("not a subscribe connection"));
        }
        let keys = self.keys.keys()?;
        let route = self
            .route
            .ok_or(crate::Error::Srtp("no route to the subscriber yet"))?;
        self.downlink = Some(Downlink::new(&keys, self.twcc_ext, route, now)?);
        Ok(())
    }

    /// Starts receiving media ourselves once DTLS-SRTP is up: the remote side's keys from the
    /// capture, the chain the connection shares.
    pub fn start_uplink(&mut self) -> Result<()> {
        let chain = self
            .chain
            .clone()
            .ok_or(crate::Error::Srtp("not a publish connection"))?;
        self.uplink = Some(Uplink::new(&self.keys.remote_keys()?, chain)?);
        Ok(())
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
///   NACKs for its losses, and browsers' simulcast RTX restored to media first of all, in a
///   [`SharedChain`] that the connection's [`Uplink`] feeds too;
/// - subscribe (we send): only a tap handing subscribers' PLI/FIR/NACK up to the room (which
///   answers NACKs from its shared cache) and their TWCC feedback to our estimator. Media
///   leaves through [`Downlink`], past the chain; sender reports are ours too. No pacer:
///   forwarding keeps the publisher's pacing.
type Chains = (Registry, Option<TwccInbox>, Option<SharedChain>);

fn interceptors(kind: Pc, media_engine: &mut MediaEngine) -> Result<Chains> {
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
    // Transport-wide CC both ways: publishers number their packets for our feedback, and we
    // number what we send subscribers (our own sender, `Downlink`, past the chain).
    for kind in [RtpCodecKind::Video, RtpCodecKind::Audio] {
        media_engine.register_feedback(
            RTCPFeedback {
                typ: TYPE_RTCP_FB_TRANSPORT_CC.to_owned(),
                parameter: String::new(),
            },
            kind,
        );
        media_engine.register_header_extension(
            RTCRtpHeaderExtensionCapability {
                uri: rtc::sdp::extmap::TRANSPORT_CC_URI.to_owned(),
            },
            kind,
            None,
        )?;
    }
    Ok(match kind {
        Pc::Publish => {
            let shared = SharedChain::default();
            let registry = Registry::new()
                // Wire-most: the NACK generator and the reports must see a repair as the packet
                // it repairs. Repairs come on RTX streams, which the uplink never takes.
                .with(Slot::from(500), ReadLink::<RridRtxUnwrap>::default())
                // Where `rtc`'s NACK generator (7 000), the first of the links it stands in for,
                // would sit.
                .with(Slot::from(6_900), shared.clone());
            (registry, None, Some(shared))
        }
        Pc::Subscribe => {
            let inbox = TwccInbox::default();
            let registry = Registry::new().with(
                Slot::from(14_000),
                ReadLink::new(FeedbackTap::new(inbox.clone())),
            );
            (registry, Some(inbox), None)
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
