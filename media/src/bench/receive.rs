//! The publish side of the packet path in memory: a real `rtc` publisher connected to the SFU's
//! publish connection, whose media the SFU reads through its [`Uplink`] as the worker does.
//!
//! [`Uplink`]: crate::uplink::Uplink

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rtc::dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use rtc::interceptor::{Registry, Slot, TwccSenderBuilder};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::RTCPeerConnection;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::message::RTCMessage;
use rtc::rtp;
use rtc::rtp_transceiver::RTCRtpSenderId;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::sansio::Protocol;
use rtc::shared::TransportContext;

use super::{datagram, negotiate, pump, sfu_side};
use crate::Pc;
use crate::error::{Error, Result};
use crate::net::router::ConnId;
use crate::peer::Peer;
use crate::uplink::Received;

/// Where the in-memory publisher sits.
const PUBLISHER_ADDR: ([u8; 4], u16) = ([127, 0, 0, 3], 20_000);
/// The publisher's video SSRC.
const SSRC: u32 = 0x0bad_cafe;
/// Between two packets' arrival times: 100 000 packets/s, as in the forwarding bench.
const ARRIVAL_GAP: Duration = Duration::from_micros(10);

/// A VP8 publisher connected (ICE, DTLS, SRTP) in memory to the SFU's publish connection, with
/// its stream already handed to the uplink, as after the stream's first packet in the SFU.
pub struct ReceiveBench {
    sfu: Peer,
    client: RTCPeerConnection,
    sender: RTCRtpSenderId,
    payload_type: u8,
    next_seq: u16,
    transport: TransportContext,
    clock: Instant,
    /// Packets the connection delivered instead of the uplink (each stream's first).
    pub by_connection: usize,
}

impl ReceiveBench {
    /// A publisher that offers both SRTP profiles, as browsers do (the SFU picks AES-GCM).
    pub fn new() -> Result<Self> {
        Self::offering(vec![
            SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm,
            SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80,
        ])
    }

    /// A publisher that offers only these SRTP profiles; its first packet is already read,
    /// starting with sequence number 65 520 so that a run soon crosses a wrap.
    pub(crate) fn offering(profiles: Vec<SrtpProtectionProfile>) -> Result<Self> {
        let now = Instant::now();
        let (sfu_addr, candidates) = sfu_side()?;
        let mut sfu = Peer::new(ConnId(1), Pc::Publish, &candidates, now)?;
        let at = SocketAddr::from(PUBLISHER_ADDR);
        let settings = SettingEngineBuilder::new()
            .with_srtp_protection_profiles(profiles)
            .build();
        // Browsers number every packet transport-wide; the SFU's feedback records each.
        let mut client = super::client_pc_configured(at, now, settings, |r: Registry| {
            r.with(Slot::TwccSender, TwccSenderBuilder::new().build())
        })?;
        let track = MediaStreamTrack::new(
            "pub".into(),
            "v".into(),
            "v".into(),
            RtpCodecKind::Video,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(SSRC),
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
        let sender = client.add_track(track)?;
        negotiate(&mut client, &mut sfu.pc, now)?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while !sfu.connected {
            if Instant::now() > deadline {
                return Err(Error::Signaling("the in-memory publisher did not connect"));
            }
            pump(&mut sfu, &mut client, sfu_addr, at);
            std::thread::sleep(Duration::from_millis(1));
        }
        sfu.start_uplink()?;
        let payload_type = client
            .rtp_sender(sender)
            .and_then(|mut s| s.get_parameters().rtp_parameters.codecs.first().cloned())
            .ok_or(Error::Signaling("no codec negotiated"))?
            .payload_type;
        let mut bench = Self {
            sfu,
            client,
            sender,
            payload_type,
            next_seq: 65_520,
            transport: datagram(at, sfu_addr, BytesMut::new()).transport,
            clock: now,
            by_connection: 0,
        };
        let first = bench.datagrams(1, 100)?;
        for d in first {
            bench.receive(d);
        }
        if bench.by_connection != 1 {
            return Err(Error::Signaling(
                "the connection did not deliver the first packet",
            ));
        }
        Ok(bench)
    }

    /// The SRTP profile the uplink decrypts.
    #[cfg(test)]
    pub(crate) fn profile(&self) -> Option<crate::srtp::Profile> {
        self.sfu.uplink.as_ref().map(|u| u.profile())
    }

    /// The payload the publisher sends in packet `seq`: `len` bytes that tell packets apart.
    pub fn payload(seq: u16, len: usize) -> Vec<u8> {
        (0..len).map(|i| (seq as usize + i) as u8).collect()
    }

    /// Has the publisher send `count` packets of `len` payload bytes through `rtc`'s write path
    /// (its interceptors, transport-wide numbering, SRTP), continuing its sequence numbers, and
    /// returns the RTP datagrams it produced, as the SFU's socket would read them.
    pub fn datagrams(&mut self, count: usize, len: usize) -> Result<Vec<BytesMut>> {
        let now = Instant::now();
        let mut sender = self
            .client
            .rtp_sender(self.sender)
            .ok_or(Error::Signaling("no sender"))?;
        for _ in 0..count {
            let seq = self.next_seq;
            self.next_seq = seq.wrapping_add(1);
            let header = rtp::header::Header {
                version: 2,
                payload_type: self.payload_type,
                sequence_number: seq,
                timestamp: (seq as u32).wrapping_mul(3000),
                ssrc: SSRC,
                ..Default::default()
            };
            let payload = Self::payload(seq, len).into();
            sender.write_rtp(now, rtp::Packet { header, payload })?;
        }
        let mut out = Vec::with_capacity(count);
        while let Some(m) = self.client.poll_write() {
            // Media only: the publisher's sender reports are not what is measured.
            if m.message.len() >= 12 && !(192..=223).contains(&m.message[1]) {
                out.push(m.message);
            }
        }
        Ok(out)
    }

    /// Reads one datagram as the worker does: through the uplink, or through the connection
    /// (which adopts the stream for the uplink). Returns the media packet the SFU got.
    pub fn receive(&mut self, data: BytesMut) -> Option<rtp::Packet> {
        self.clock += ARRIVAL_GAP;
        let uplink = self.sfu.uplink.as_mut()?;
        match uplink.receive(data, self.clock) {
            Received::Media(packet, _) => Some(packet),
            Received::Dropped => None,
            Received::NotMine(data) => {
                let sfu_addr = self.transport.local_addr;
                let from = self.transport.peer_addr;
                let _ = self.sfu.pc.handle_read(datagram(from, sfu_addr, data));
                let mut got = None;
                while let Some(m) = self.sfu.pc.poll_read() {
                    if let RTCMessage::RtpPacket(_, p) = m.message {
                        uplink.adopt(p.header.ssrc, p.header.sequence_number);
                        self.by_connection += 1;
                        got = Some(p);
                    }
                }
                got
            }
        }
    }
}
