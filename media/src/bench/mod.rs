//! Support for benchmarks and load tests: the real forwarding path (DownTrack rewrite, TWCC
//! numbering, our SRTP sender keyed by DTLS-SRTP) against subscriber connections established
//! in memory, with no sockets. Not part of the application API.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rtc::interceptor::Registry;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::configuration::media_engine::MediaEngine;
use rtc::peer_connection::configuration::setting_engine::{SettingEngine, SettingEngineBuilder};
use rtc::peer_connection::event::RTCPeerConnectionEvent;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::{CandidateConfig, CandidateHostConfig, RTCIceCandidate};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodec, RtpCodecKind};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};

use crate::downtrack::DownTrack;
use crate::error::{Error, Result};
use crate::net::outbox::Wire;
use crate::net::router::ConnId;
use crate::peer::{Candidates, Peer};
use crate::rtp::codec::Codec;
use crate::track::TrackId;
use crate::{Pc, room};

mod receive;
pub use receive::ReceiveBench;

const SFU_ADDR: &str = "127.0.0.1:7882";

/// One subscriber: the SFU side of its connection, its downtrack, and the client side.
struct Leg {
    sfu: Peer,
    dt: DownTrack,
    client: RTCPeerConnection,
    client_addr: SocketAddr,
}

/// N subscriber connections of one track, connected (ICE, DTLS, SRTP) in memory.
pub struct ForwardBench {
    legs: Vec<Leg>,
    kind: RtpCodecKind,
    sink: Sink,
    /// The arrival time of the next packet. In the SFU each datagram carries the kernel's
    /// receive stamp, so forwarding is handed its time rather than reading the clock; reading
    /// it here would time the clock (tens of ns on a VM) as part of forwarding.
    clock: Instant,
}

/// Between two packets' arrival times in the bench: 100 000 packets/s.
const ARRIVAL_GAP: Duration = Duration::from_micros(10);

/// Where the bench's datagrams go: counted and dropped, or kept for a test to deliver.
#[derive(Default)]
struct Sink {
    buf: Vec<u8>,
    bytes: usize,
    keep: bool,
    kept: Vec<(SocketAddr, Vec<u8>)>,
}

impl Wire for Sink {
    fn push_with(
        &mut self,
        to: &TransportContext,
        _received: Option<Instant>,
        build: impl FnOnce(&mut Vec<u8>) -> bool,
    ) {
        self.buf.clear();
        if build(&mut self.buf) {
            self.bytes += self.buf.len();
            if self.keep {
                self.kept.push((to.peer_addr, self.buf.clone()));
            }
        }
    }
}

impl ForwardBench {
    /// Connects `subscribers` in-memory clients to one video (VP8) or audio (Opus) track.
    pub fn new(subscribers: usize, kind: RtpCodecKind) -> Result<Self> {
        let now = Instant::now();
        let (sfu_addr, candidates) = sfu_side()?;
        let codec = match kind {
            RtpCodecKind::Audio => RTCRtpCodec {
                mime_type: "audio/opus".into(),
                clock_rate: 48000,
                channels: 2,
                sdp_fmtp_line: "minptime=10;useinbandfec=1".into(),
                rtcp_feedback: vec![],
            },
            _ => RTCRtpCodec {
                mime_type: "video/VP8".into(),
                clock_rate: 90000,
                ..Default::default()
            },
        };
        let mut legs = Vec::with_capacity(subscribers);
        for i in 0..subscribers {
            let mut sfu = Peer::new(ConnId(i as u64), Pc::Subscribe, &candidates, now)?;
            let dt = DownTrack::attach(
                &mut sfu.pc,
                TrackId(1),
                "pub",
                "pub:t".into(),
                kind,
                Codec::from_mime(&codec.mime_type),
                codec.clone(),
            )?;
            let client_addr = SocketAddr::from(([127, 0, 0, 2], 10_000 + i as u16));
            let client = client_pc(client_addr, now)?;
            legs.push(Leg {
                sfu,
                dt,
                client,
                client_addr,
            });
        }
        let mut bench = Self {
            legs,
            kind,
            sink: Sink {
                buf: Vec::with_capacity(1500),
                ..Default::default()
            },
            clock: now,
        };
        bench.connect(sfu_addr)?;
        Ok(bench)
    }

    fn connect(&mut self, sfu_addr: SocketAddr) -> Result<()> {
        let now = Instant::now();
        for leg in &mut self.legs {
            negotiate(&mut leg.sfu.pc, &mut leg.client, now)?;
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.legs.iter().any(|l| !l.sfu.connected) {
            if Instant::now() > deadline {
                return Err(Error::Signaling("in-memory connections did not connect"));
            }
            for leg in &mut self.legs {
                leg.pump(sfu_addr)?;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        for leg in &mut self.legs {
            room::resolve_payload_type(&mut leg.sfu.pc, &mut leg.dt);
            if leg.dt.payload_type.is_none() {
                return Err(Error::Signaling("codec not negotiated"));
            }
            leg.sfu.twcc_ext = room::twcc_extension(&mut leg.sfu.pc, leg.dt.sender_id);
            leg.sfu.start_downlink(now)?;
        }
        Ok(())
    }

    /// Number of subscribers.
    pub fn subscribers(&self) -> usize {
        self.legs.len()
    }

    /// Forwards one publisher packet to every subscriber through the real sender path and
    /// returns the SRTP bytes produced (the datagrams are dropped instead of sent).
    pub fn forward(&mut self, packet: &rtp::Packet) -> usize {
        self.clock += ARRIVAL_GAP;
        let now = self.clock;
        self.sink.bytes = 0;
        for leg in &mut self.legs {
            if let Some(link) = leg.sfu.downlink.as_mut() {
                leg.dt.write(link, &mut self.sink, packet, 0, true, now);
            }
        }
        self.sink.bytes
    }

    /// A publisher packet of this bench's kind with `len` payload bytes.
    pub fn packet(&self, seq: u16, len: usize) -> rtp::Packet {
        let mut payload = vec![0xab; len];
        if self.kind == RtpCodecKind::Video && len >= 2 {
            payload[0] = 0x10;
            payload[1] = 0x00;
        }
        rtp::Packet {
            header: rtp::header::Header {
                version: 2,
                payload_type: 96,
                sequence_number: seq,
                timestamp: seq as u32 * 3000,
                ssrc: 0x5eed,
                marker: true,
                ..Default::default()
            },
            payload: payload.into(),
        }
    }
}

impl Leg {
    /// Moves datagrams both ways and runs timers and events once.
    fn pump(&mut self, sfu_addr: SocketAddr) -> Result<()> {
        pump(&mut self.sfu, &mut self.client, sfu_addr, self.client_addr);
        Ok(())
    }
}

/// The SFU's address in the benches, and its host candidates there.
fn sfu_side() -> Result<(SocketAddr, Candidates)> {
    let addr: SocketAddr = SFU_ADDR.parse().map_err(|_| Error::Signaling("addr"))?;
    let candidates = Candidates {
        udp_port: addr.port(),
        tcp_port: None,
        ips: vec![addr.ip()],
    };
    Ok((addr, candidates))
}

/// One offer/answer exchange between two connections.
fn negotiate(
    offerer: &mut RTCPeerConnection,
    answerer: &mut RTCPeerConnection,
    now: Instant,
) -> Result<()> {
    let offer = offerer.create_offer(None)?;
    offerer.set_local_description(now, offer)?;
    let offer = offerer
        .local_description()
        .ok_or(Error::Signaling("offer"))?;
    answerer.set_remote_description(now, offer)?;
    let answer = answerer.create_answer(None)?;
    answerer.set_local_description(now, answer)?;
    let answer = answerer
        .local_description()
        .ok_or(Error::Signaling("answer"))?;
    offerer.set_remote_description(now, answer)?;
    Ok(())
}

/// Moves datagrams both ways between the SFU side of a connection and its in-memory client,
/// runs timers, and notes when the SFU side connects; what either side reads is dropped.
fn pump(sfu: &mut Peer, client: &mut RTCPeerConnection, sfu_addr: SocketAddr, at: SocketAddr) {
    let now = Instant::now();
    let _ = sfu.pc.handle_timeout(now);
    let _ = client.handle_timeout(now);
    while let Some(m) = sfu.pc.poll_write() {
        sfu.learn_route(&m);
        let _ = client.handle_read(datagram(sfu_addr, at, m.message));
    }
    while let Some(m) = client.poll_write() {
        let _ = sfu.pc.handle_read(datagram(at, sfu_addr, m.message));
    }
    while let Some(ev) = sfu.pc.poll_event() {
        if let RTCPeerConnectionEvent::OnConnectionStateChangeEvent(
            RTCPeerConnectionState::Connected,
        ) = ev
        {
            sfu.connected = true;
        }
    }
    while client.poll_event().is_some() {}
    while client.poll_read().is_some() {}
    while sfu.pc.poll_read().is_some() {}
}

fn datagram(from: SocketAddr, to: SocketAddr, message: BytesMut) -> TaggedBytesMut {
    TaggedBytesMut {
        now: Instant::now(),
        transport: TransportContext {
            local_addr: to,
            peer_addr: from,
            ecn: None,
            transport_protocol: TransportProtocol::UDP,
        },
        message,
    }
}

/// A plain client peer connection with one host candidate at `addr` (default codecs and
/// interceptors), as the benches' and load harness's clients use.
pub fn client_pc(addr: SocketAddr, now: Instant) -> Result<RTCPeerConnection> {
    client_pc_configured(addr, now, SettingEngineBuilder::new().build(), |r| r)
}

/// [`client_pc`] with these settings, and interceptors added by `configure`.
fn client_pc_configured(
    addr: SocketAddr,
    now: Instant,
    settings: SettingEngine,
    configure: impl FnOnce(Registry) -> Registry,
) -> Result<RTCPeerConnection> {
    let mut me = MediaEngine::default();
    me.register_default_codecs()?;
    let registry = configure(register_default_interceptors(Registry::new(), &mut me)?);
    let mut pc = RTCPeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_setting_engine(settings)
        .with_media_engine(me)
        .with_interceptor_registry(registry)
        .build(now)?;
    let c = CandidateHostConfig {
        base_config: CandidateConfig {
            network: "udp".into(),
            address: addr.ip().to_string(),
            port: addr.port(),
            component: 1,
            ..Default::default()
        },
        ..Default::default()
    }
    .new_candidate_host()?;
    pc.add_local_candidate(RTCIceCandidate::from(&c).to_json()?)?;
    Ok(pc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::srtp::Profile;
    use rtc::dtls::extension::extension_use_srtp::SrtpProtectionProfile;
    use rtc::peer_connection::message::RTCMessage;

    #[test]
    fn in_memory_subscribers_get_srtp() {
        let mut b = ForwardBench::new(3, RtpCodecKind::Video).expect("connects");
        assert_eq!(b.subscribers(), 3);
        let p = b.packet(1, 1200);
        let bytes = b.forward(&p);
        // Each subscriber gets one SRTP packet: 12-byte header, the transport-cc extension
        // (8 bytes), the payload and a 16-byte tag, i.e. the AEAD_AES_128_GCM profile won.
        assert_eq!(bytes, 3 * (12 + 8 + 1200 + 16));
    }

    /// What our sender encrypts with the captured keys, a real `rtc` receiver decrypts: the
    /// capture took the local (sending) keys, not the remote ones.
    #[test]
    fn srtp_keys_match_the_peer_connection() {
        let mut b = ForwardBench::new(2, RtpCodecKind::Video).expect("connects");
        b.sink.keep = true;
        for seq in 1..=5u16 {
            let p = b.packet(seq, 600 + seq as usize);
            b.forward(&p);
        }
        let kept = std::mem::take(&mut b.sink.kept);
        assert_eq!(kept.len(), 10);
        let sfu_addr: SocketAddr = SFU_ADDR.parse().expect("addr");
        for leg in &mut b.legs {
            for (to, data) in kept.iter().filter(|(to, _)| *to == leg.client_addr) {
                leg.client
                    .handle_read(datagram(sfu_addr, *to, BytesMut::from(&data[..])))
                    .expect("the client accepts the datagram");
            }
            let mut got = Vec::new();
            while let Some(m) = leg.client.poll_read() {
                if let RTCMessage::RtpPacket(_, p) = m.message {
                    got.push((p.header.sequence_number, p.payload.len()));
                }
            }
            assert_eq!(got.len(), 5, "every packet decrypted: {got:?}");
            assert!(got.iter().all(|(seq, len)| *len == 600 + *seq as usize));
        }
    }

    /// The publish side: with the remote keys the capture took, the uplink decrypts what a real
    /// `rtc` publisher sends, in the profile the two negotiated, across a sequence wrap, once
    /// the connection has delivered the stream's first packet.
    fn the_uplink_reads_a_real_publisher(offered: SrtpProtectionProfile, expect: Profile) {
        let mut b = ReceiveBench::offering(vec![offered]).expect("connects");
        assert_eq!(b.profile(), Some(expect));
        assert_eq!(b.by_connection, 1, "the stream's first packet");
        let sent = b.datagrams(29, 300).expect("sent");
        assert_eq!(sent.len(), 29);
        let got: Vec<rtp::Packet> = sent
            .into_iter()
            .map(|d| b.receive(d).expect("a packet of a known stream failed"))
            .collect();
        // Like a browser's, every packet carries its transport-wide number (two bytes).
        assert!(
            got.iter()
                .all(|p| p.header.extensions.iter().any(|e| e.payload.len() == 2)),
            "{:?}",
            got[0].header
        );
        let got: Vec<(u16, Vec<u8>)> = got
            .into_iter()
            .map(|p| (p.header.sequence_number, p.payload.to_vec()))
            .collect();
        let want: Vec<(u16, Vec<u8>)> = (1..30u16)
            .map(|i| 65_520u16.wrapping_add(i))
            .map(|seq| (seq, ReceiveBench::payload(seq, 300)))
            .collect();
        assert_eq!(got, want, "every packet, in order, across the wrap");
        assert_eq!(b.by_connection, 1, "only the stream's first packet");
    }

    #[test]
    fn the_uplink_reads_a_real_gcm_publisher() {
        the_uplink_reads_a_real_publisher(
            SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm,
            Profile::AeadAes128Gcm,
        );
    }

    #[test]
    fn the_uplink_reads_a_real_cm_sha1_publisher() {
        the_uplink_reads_a_real_publisher(
            SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80,
            Profile::Aes128CmHmacSha1_80,
        );
    }
}
