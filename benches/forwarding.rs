//! Cost of forwarding one packet to each subscriber through the real path (DownTrack layer
//! decision and rewrite, TWCC numbering and send history, our SRTP sender with the
//! AEAD_AES_128_GCM keys DTLS-SRTP negotiated on a real `rtc` connection), beside a lower bound
//! measured in the same run: the same header rewrite plus one in-place AES-128-GCM seal per
//! subscriber.
//!
//! And the way in, which one-to-one calls pay once per forwarded packet too: one publisher
//! datagram read through the SFU's uplink (SRTP authenticated and decrypted in place with the
//! keys of a real `rtc` publisher connection, parsed, recorded for receiver reports, NACKs and
//! transport-wide-cc feedback), beside the floor of one in-place AES-128-GCM open.
//!
//! Run: `cargo bench -p mescon-media --bench forwarding`. After criterion's groups it prints
//! tables of ns per packet and the ratio real / lower bound, timed back to back so machine
//! noise hits both sides alike.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use criterion::{BenchmarkId, Criterion, Throughput};
use mescon_media::bench::{ForwardBench, ReceiveBench};
use ring::aead::{AES_128_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;

const SUBSCRIBERS: [usize; 3] = [1, 10, 100];
const CASES: [(&str, RtpCodecKind, usize); 2] = [
    ("video_1200B", RtpCodecKind::Video, 1200),
    ("audio_100B", RtpCodecKind::Audio, 100),
];

/// The floor: rewrite the 12-byte header for the subscriber and seal the payload in place.
struct LowerBound {
    key: LessSafeKey,
    salt: [u8; 12],
    buf: Vec<u8>,
}

impl LowerBound {
    fn new() -> Self {
        let key = UnboundKey::new(&AES_128_GCM, &[7u8; 16]).expect("key");
        Self {
            key: LessSafeKey::new(key),
            salt: [3u8; 12],
            buf: Vec::with_capacity(1500),
        }
    }

    fn forward(&mut self, p: &rtp::Packet, subscribers: usize) -> usize {
        let mut bytes = 0;
        for sub in 0..subscribers as u32 {
            let h = &p.header;
            let (seq, ts, ssrc) = (h.sequence_number.wrapping_add(7), h.timestamp ^ 5, sub + 1);
            self.buf.clear();
            self.buf
                .extend_from_slice(&[0x80, (h.marker as u8) << 7 | 96]);
            self.buf.extend_from_slice(&seq.to_be_bytes());
            self.buf.extend_from_slice(&ts.to_be_bytes());
            self.buf.extend_from_slice(&ssrc.to_be_bytes());
            self.buf.extend_from_slice(&p.payload);
            // RFC 7714 IV: salt XOR (0 || ssrc || roc || seq).
            let mut iv = self.salt;
            for (i, b) in ssrc.to_be_bytes().iter().enumerate() {
                iv[2 + i] ^= b;
            }
            iv[10] ^= (seq >> 8) as u8;
            iv[11] ^= seq as u8;
            let (hdr, body) = self.buf.split_at_mut(12);
            let Ok(tag) = self.key.seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(iv),
                Aad::from(&*hdr),
                body,
            ) else {
                continue;
            };
            self.buf.extend_from_slice(tag.as_ref());
            bytes += self.buf.len();
        }
        bytes
    }
}

/// Payload sizes of the way-in cases: a video and an audio packet.
const RECEIVE_CASES: [(&str, usize); 2] = [("receive_1200B", 1200), ("receive_100B", 100)];
/// Datagrams prepared per timed batch: each can be read only once (replay protection, and
/// decryption in place), so they are made ahead, untimed.
const RECEIVE_BATCH: usize = 4096;

/// The floor of the way in: authenticate and decrypt the payload in place with AES-128-GCM
/// (the RFC 7714 IV) after reading the 12-byte header it covers.
struct OpenFloor {
    key: LessSafeKey,
    salt: [u8; 12],
    sealed: Vec<u8>,
}

impl OpenFloor {
    fn new(len: usize) -> Self {
        let key = LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &[9u8; 16]).expect("key"));
        let salt = [4u8; 12];
        let mut sealed = vec![0x80, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0x5e, 0xed];
        sealed.extend(std::iter::repeat_n(0xab, len));
        let (hdr, body) = sealed.split_at_mut(12);
        let tag = key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(Self::iv(&salt, hdr)),
                Aad::from(&*hdr),
                body,
            )
            .expect("seal");
        sealed.extend_from_slice(tag.as_ref());
        Self { key, salt, sealed }
    }

    fn iv(salt: &[u8; 12], hdr: &[u8]) -> [u8; 12] {
        let mut iv = *salt;
        for i in 0..4 {
            iv[2 + i] ^= hdr[8 + i];
        }
        iv[10] ^= hdr[2];
        iv[11] ^= hdr[3];
        iv
    }

    fn datagrams(&self, n: usize) -> Vec<BytesMut> {
        (0..n).map(|_| BytesMut::from(&self.sealed[..])).collect()
    }

    fn open(&self, d: &mut BytesMut) -> usize {
        let (hdr, body) = d.split_at_mut(12);
        let nonce = Nonce::assume_unique_for_key(Self::iv(&self.salt, hdr));
        self.key
            .open_in_place(nonce, Aad::from(&*hdr), body)
            .map_or(0, |p| p.len())
    }
}

/// Times reading `iters` prepared datagrams through the uplink.
fn time_receive(real: &mut ReceiveBench, len: usize, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters as usize;
    while left > 0 {
        let batch = real
            .datagrams(left.min(RECEIVE_BATCH), len)
            .expect("publisher sends");
        left -= batch.len();
        let t = Instant::now();
        for d in batch {
            // Every datagram must come out as media, or the bench times refusals.
            assert!(black_box(real.receive(d)).is_some(), "a packet was refused");
        }
        total += t.elapsed();
    }
    total
}

fn time_open(floor: &OpenFloor, len: usize, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters as usize;
    while left > 0 {
        let mut batch = floor.datagrams(left.min(RECEIVE_BATCH));
        left -= batch.len();
        let t = Instant::now();
        for d in &mut batch {
            assert_eq!(black_box(floor.open(d)), len);
        }
        total += t.elapsed();
    }
    total
}

fn benches(c: &mut Criterion) {
    for (name, kind, len) in CASES {
        let mut group = c.benchmark_group(name);
        group
            .sample_size(20)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2));
        for n in SUBSCRIBERS {
            let mut real = ForwardBench::new(n, kind).expect("in-memory subscribers");
            // Built once: the publisher's packet is not part of the cost being measured.
            let mut p = real.packet(0, len);
            group.throughput(Throughput::Elements(n as u64));
            group.bench_with_input(BenchmarkId::new("real", n), &n, |b, _| {
                b.iter(|| {
                    p.header.sequence_number = p.header.sequence_number.wrapping_add(1);
                    let bytes = black_box(real.forward(&p));
                    assert!(bytes >= n * len, "a packet was dropped");
                })
            });
            let mut floor = LowerBound::new();
            let p = real.packet(1, len);
            group.bench_with_input(BenchmarkId::new("lower_bound", n), &n, |b, &n| {
                b.iter(|| black_box(floor.forward(&p, n)))
            });
        }
        group.finish();
    }
    for (name, len) in RECEIVE_CASES {
        let mut group = c.benchmark_group(name);
        group
            .sample_size(20)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2))
            .throughput(Throughput::Elements(1));
        let mut real = ReceiveBench::new().expect("in-memory publisher");
        group.bench_function("real", |b| {
            b.iter_custom(|iters| time_receive(&mut real, len, iters))
        });
        let floor = OpenFloor::new(len);
        group.bench_function("lower_bound", |b| {
            b.iter_custom(|iters| time_open(&floor, len, iters))
        });
        group.finish();
    }
}

/// ns per forwarded packet for both, measured back to back (best of 5 rounds).
fn ratio_table() {
    println!("\nForwarding cost per forwarded packet (best of 5 rounds of ~0.3 s each)");
    println!(
        "{:<12} {:>5} {:>12} {:>14} {:>7}",
        "case", "subs", "real ns/pkt", "bound ns/pkt", "ratio"
    );
    for (name, kind, len) in CASES {
        for n in SUBSCRIBERS {
            let mut real = ForwardBench::new(n, kind).expect("in-memory subscribers");
            let mut floor = LowerBound::new();
            let (mut best_real, mut best_floor) = (f64::MAX, f64::MAX);
            let mut p = real.packet(0, len);
            for _ in 0..5 {
                let iters = (30_000 / n).max(300);
                let t = Instant::now();
                for _ in 0..iters {
                    p.header.sequence_number = p.header.sequence_number.wrapping_add(1);
                    // Every subscriber must get every packet, or the bench times drops.
                    assert!(
                        black_box(real.forward(&p)) >= n * len,
                        "a packet was dropped"
                    );
                }
                best_real = best_real.min(t.elapsed().as_nanos() as f64 / (iters * n) as f64);
                let p = real.packet(1, len);
                let t = Instant::now();
                for _ in 0..iters {
                    black_box(floor.forward(&p, n));
                }
                best_floor = best_floor.min(t.elapsed().as_nanos() as f64 / (iters * n) as f64);
            }
            println!(
                "{:<12} {:>5} {:>12.0} {:>14.0} {:>7.2}",
                name,
                n,
                best_real,
                best_floor,
                best_real / best_floor
            );
        }
    }
}

/// ns per publisher packet read, both ways in, measured back to back (best of 5 rounds).
fn receive_table() {
    println!("\nReceiving cost per publisher packet (best of 5 rounds of 20 000 packets)");
    println!(
        "{:<14} {:>12} {:>14} {:>7}",
        "case", "real ns/pkt", "bound ns/pkt", "ratio"
    );
    for (name, len) in RECEIVE_CASES {
        let mut real = ReceiveBench::new().expect("in-memory publisher");
        let floor = OpenFloor::new(len);
        let (mut best_real, mut best_floor) = (f64::MAX, f64::MAX);
        let iters = 20_000;
        for _ in 0..5 {
            let t = time_receive(&mut real, len, iters);
            best_real = best_real.min(t.as_nanos() as f64 / iters as f64);
            let t = time_open(&floor, len, iters);
            best_floor = best_floor.min(t.as_nanos() as f64 / iters as f64);
        }
        println!(
            "{:<14} {:>12.0} {:>14.0} {:>7.2}",
            name,
            best_real,
            best_floor,
            best_real / best_floor
        );
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c);
    c.final_summary();
    ratio_table();
    receive_table();
}
