//! Loss on a publisher's uplink, repaired the way browsers repair simulcast: the SFU NACKs the
//! missing packets and the publisher answers on each layer's RTX stream, which the SDP does not
//! declare and only the repaired-stream-id (RRID) header extension names. The subscriber must
//! see every packet, the repaired ones included, in one continuous stream.

mod common;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use common::*;
use rtc::interceptor::{Interceptor, Packet, Slot, StreamInfo, TaggedPacket};
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::rtp;
use rtc::sansio::Protocol;
use rtc::shared::error::Error as RtcError;

/// RTX SSRCs of the three layers.
const RTX_SSRCS: [u32; 3] = [0xb0, 0xb1, 0xb2];
/// Every packet whose sequence number is this modulo `LOSS_EVERY` is lost on the uplink.
const LOSS_EVERY: u16 = 20;
const LOSS_AT: u16 = 7;

/// What the publisher's "network" needs to know once the SFU has answered.
#[derive(Clone)]
struct Wire {
    rid_ext: u8,
    rrid_ext: u8,
    rtx_pt: u8,
}

/// Counters shared with the test.
#[derive(Default)]
struct Counts {
    lost: AtomicUsize,
    rtx_sent: AtomicUsize,
}

/// Wire-most on the publisher: loses some media packets for good, and answers the SFU's NACKs
/// for them as libwebrtc does, on the layer's RTX stream named by RRID (RFC 4588, RFC 8852).
#[derive(Default)]
struct BrowserStyleRtx {
    wire: Arc<Mutex<Option<Wire>>>,
    counts: Arc<Counts>,
    lost: HashMap<(u32, u16), rtp::Packet>,
    rtx_seq: [u16; 3],
    read_queue: VecDeque<TaggedPacket>,
    write_queue: VecDeque<TaggedPacket>,
}

impl BrowserStyleRtx {
    fn wire(&self) -> Option<Wire> {
        self.wire.lock().ok().and_then(|w| w.clone())
    }

    fn retransmit(&mut self, template: &TaggedPacket, nack: &TransportLayerNack) {
        let Some(wire) = self.wire() else { return };
        let Some(layer) = SSRCS.iter().position(|s| *s == nack.media_ssrc) else {
            return;
        };
        for pair in &nack.nacks {
            for seq in pair.packet_list() {
                let Some(original) = self.lost.get(&(nack.media_ssrc, seq)) else {
                    continue;
                };
                let mut header = original.header.clone();
                header.ssrc = RTX_SSRCS[layer];
                header.payload_type = wire.rtx_pt;
                header.sequence_number = self.rtx_seq[layer];
                self.rtx_seq[layer] = self.rtx_seq[layer].wrapping_add(1);
                let _ = header.del_extension(wire.rid_ext);
                header
                    .set_extension(wire.rrid_ext, Bytes::from_static(RIDS[layer].as_bytes()))
                    .expect("rrid");
                let mut payload = BytesMut::with_capacity(original.payload.len() + 2);
                payload.put_u16(seq);
                payload.put_slice(&original.payload);
                let packet = rtp::Packet {
                    header,
                    payload: payload.freeze(),
                };
                self.write_queue.push_back(TaggedPacket {
                    now: template.now,
                    transport: template.transport,
                    message: Packet::Rtp(packet).into(),
                });
                self.counts.rtx_sent.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for BrowserStyleRtx {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = RtcError;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            let nacks: Vec<TransportLayerNack> = packets
                .iter()
                .filter_map(|p| p.as_any().downcast_ref::<TransportLayerNack>().cloned())
                .collect();
            for nack in &nacks {
                self.retransmit(&msg, nack);
            }
        }
        self.read_queue.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read_queue.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        if self.wire().is_some()
            && let Packet::Rtp(p) = &msg.message.packet
            && SSRCS.contains(&p.header.ssrc)
        {
            let key = (p.header.ssrc, p.header.sequence_number);
            if self.lost.contains_key(&key) {
                // The client's own NACK responder resending in-band: lost as well, so the only
                // way through is the RTX stream.
                return Ok(());
            }
            if p.header.sequence_number % LOSS_EVERY == LOSS_AT {
                self.lost.insert(key, p.clone());
                self.counts.lost.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
        }
        self.write_queue.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write_queue.pop_front()
    }

    fn handle_timeout(&mut self, _now: Instant) -> Result<(), Self::Error> {
        Ok(())
    }

    fn poll_timeout(&mut self) -> Option<Self::Time> {
        None
    }
}

impl Interceptor for BrowserStyleRtx {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uplink_loss_on_a_simulcast_layer_is_repaired_through_rrid_rtx() {
    let sfu = start_sfu(false).await;
    let (sh, sub) = join_subscriber(&sfu, "room", "sub").await;
    sh.set_max_layer(0).await.expect("small view");

    let wire: Arc<Mutex<Option<Wire>>> = Default::default();
    let counts = Arc::new(Counts::default());
    let network = BrowserStyleRtx {
        wire: wire.clone(),
        counts: counts.clone(),
        ..Default::default()
    };
    let client = Client::with_interceptors(false, |r| r.with(Slot::from(500), network)).await;
    let (ph, _pev) = sfu.join("room", "pub").await.expect("join");
    let mut publisher = SimulcastPublisher::connect_with(&ph, client).await;
    let answer = publisher.answer.clone();
    *wire.lock().expect("wire") = Some(Wire {
        rid_ext: extmap_id(&answer, "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id")
            .expect("rid ext"),
        rrid_ext: extmap_id(
            &answer,
            "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
        )
        .expect("the SFU negotiates RRID"),
        rtx_pt: rtx_pt_of(&answer, VP8_PT).expect("the SFU negotiates RTX for VP8"),
    });

    publisher.send_frames(300).await;
    // The last losses need a NACK round (the generator runs every 100 ms) to be repaired.
    tokio::time::sleep(Duration::from_millis(600)).await;

    let lost = counts.lost.load(Ordering::Relaxed);
    let rtx_sent = counts.rtx_sent.load(Ordering::Relaxed);
    assert!(lost >= 30, "the uplink lost packets on every layer: {lost}");
    println!("uplink: {lost} packets lost, {rtx_sent} RTX sent in answer to NACKs");
    assert!(
        rtx_sent >= lost / 3,
        "the SFU asked for the lost packets and got RTX back: {rtx_sent} RTX for {lost} lost"
    );
    // A repair that reaches the SFU's NACK generator ends the asking; one that is dropped
    // leaves it NACKing the same packets round after round.
    assert!(
        rtx_sent <= 3 * lost,
        "repaired packets are not asked for again: {rtx_sent} RTX for {lost} lost"
    );

    let seen = sub.seen().get("pub:cam").cloned().unwrap_or_default();
    assert!(seen.len() >= 200, "layer 0 flowing: {} packets", seen.len());
    assert!(seen.iter().all(|p| p.head[2] == 0), "only layer 0");
    // Each packet once, in order: no hole where the uplink lost one, and each repaired packet
    // is the original (its payload carries the frame number, one packet per frame).
    let mut by_seq: Vec<&Seen> = Vec::new();
    let base = seen[0].seq;
    let mut have = std::collections::HashSet::new();
    for p in &seen {
        if have.insert(p.seq) {
            by_seq.push(p);
        }
    }
    by_seq.sort_by_key(|p| p.seq.wrapping_sub(base));
    for w in by_seq.windows(2) {
        assert_eq!(
            w[1].seq,
            w[0].seq.wrapping_add(1),
            "a hole after seq {} (of {} received, {lost} lost upstream, {rtx_sent} RTX)",
            w[0].seq,
            by_seq.len()
        );
        assert_eq!(
            w[1].head[3],
            w[0].head[3].wrapping_add(1),
            "packet {} carries the frame after packet {}",
            w[1].seq,
            w[0].seq
        );
        assert_eq!(w[1].pt, VP8_PT);
    }
    let _ = &publisher.client;
}
