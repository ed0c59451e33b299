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
use rtc::peer_connection::sdp::RTCSessionDescription;
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
    /// The arrival time of the next packet. In the SFU the socket reader stamps each datagram
    /// as it takes it, so forwarding is handed its time rather than reading the clock; reading
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
        let sfu_addr: SocketAddr = SFU_ADDR.parse().map_err(|_| Error::Signaling("addr"))?;
        let candidates = Candidates {
            udp_port: sfu_addr.port(),
            tcp_port: None,
            ips: vec![sfu_addr.ip()],
        };
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
            let offer = leg.sfu.pc.create_offer(None)?;
            leg.sfu.pc.set_local_description(now, offer)?;
            let sdp = leg
                .sfu
                .pc
                .local_description()
                .ok_or(Error::Signaling("offer"))?;
            leg.client.set_remote_description(now, sdp)?;
            let answer = leg.client.create_answer(None)?;
            leg.client.set_local_description(now, answer)?;
            let sdp = leg
                .client
                .local_description()
                .ok_or(Error::Signaling("answer"))?;
            leg.sfu
                .pc
                .set_remote_description(now, RTCSessionDescription::answer(sdp.sdp)?)?;
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
    client_pc_with(addr, now, SettingEngineBuilder::new().build())
}

fn client_pc_with(
    addr: SocketAddr,
    now: Instant,
    settings: SettingEngine,
) -> Result<RTCPeerConnection> {
    let mut me = MediaEngine::default();
    me.register_default_codecs()?;
    let registry = register_default_interceptors(Registry::new(), &mut me)?;
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
    use crate::uplink::Received;
    use rtc::dtls::extension::extension_use_srtp::SrtpProtectionProfile;
    use rtc::media_stream::MediaStreamTrack;
    use rtc::peer_connection::message::RTCMessage;
    use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodingParameters, RTCRtpEncodingParameters};

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
        let now = Instant::now();
        let sfu_addr: SocketAddr = SFU_ADDR.parse().expect("addr");
        let candidates = Candidates {
            udp_port: sfu_addr.port(),
            tcp_port: None,
            ips: vec![sfu_addr.ip()],
        };
        let mut sfu = Peer::new(ConnId(1), Pc::Publish, &candidates, now).expect("peer");
        let at = SocketAddr::from(([127, 0, 0, 3], 20_000));
        let settings = SettingEngineBuilder::new()
            .with_srtp_protection_profiles(vec![offered])
            .build();
        let mut client = client_pc_with(at, now, settings).expect("client");
        let ssrc = 0x0bad_cafe;
        let track = MediaStreamTrack::new(
            "pub".into(),
            "v".into(),
            "v".into(),
            RtpCodecKind::Video,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                codec: RTCRtpCodec {
                    mime_type: "video/VP8".into(),
                    clock_rate: 90_000,
                    ..Default::default()
                },
                ..Default::default()
            }],
        );
        let sender_id = client.add_track(track).expect("track");
        let offer = client.create_offer(None).expect("offer");
        client.set_local_description(now, offer).expect("local");
        let offer = client.local_description().expect("offer");
        sfu.pc.set_remote_description(now, offer).expect("remote");
        let answer = sfu.pc.create_answer(None).expect("answer");
        sfu.pc.set_local_description(now, answer).expect("local");
        let answer = sfu.pc.local_description().expect("answer");
        client.set_remote_description(now, answer).expect("remote");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !sfu.connected {
            assert!(Instant::now() < deadline, "did not connect");
            pump(&mut sfu, &mut client, sfu_addr, at);
            std::thread::sleep(Duration::from_millis(1));
        }
        sfu.start_uplink().expect("the remote keys were captured");
        assert_eq!(sfu.uplink.as_ref().map(|u| u.profile()), Some(expect));

        let mut sender = client.rtp_sender(sender_id).expect("sender");
        let pt = sender.get_parameters().rtp_parameters.codecs[0].payload_type;
        let sent: Vec<(u16, Vec<u8>)> = (0..30u16)
            .map(|i| (65_520u16.wrapping_add(i), vec![i as u8; 300 + i as usize]))
            .collect();
        for (seq, payload) in &sent {
            let header = rtp::header::Header {
                version: 2,
                payload_type: pt,
                sequence_number: *seq,
                timestamp: *seq as u32 * 3000,
                ssrc,
                ..Default::default()
            };
            let p = rtp::Packet {
                header,
                payload: payload.clone().into(),
            };
            sender.write_rtp(now, p).expect("write");
        }
        let transport = datagram(at, sfu_addr, BytesMut::new()).transport;
        let (mut by_uplink, mut by_connection) = (Vec::new(), 0);
        while let Some(m) = client.poll_write() {
            let Some(uplink) = sfu.uplink.as_mut() else {
                unreachable!("started above")
            };
            match uplink.receive(m.message, now, transport) {
                Received::Media(p, _) => {
                    by_uplink.push((p.header.sequence_number, p.payload.to_vec()))
                }
                Received::Dropped => panic!("a packet of a known stream failed"),
                Received::NotMine(data) => {
                    // What the room does with the connection's packets: adopt the stream.
                    let _ = sfu.pc.handle_read(datagram(at, sfu_addr, data));
                    while let Some(m) = sfu.pc.poll_read() {
                        if let RTCMessage::RtpPacket(_, p) = m.message {
                            let (s, seq) = (p.header.ssrc, p.header.sequence_number);
                            uplink.adopt(s, seq);
                            by_connection += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(by_connection, 1, "only the stream's first packet");
        assert_eq!(by_uplink.as_slice(), &sent[1..]);
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
