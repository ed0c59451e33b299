//! Cost of forwarding one packet to each subscriber through the real path (DownTrack layer
//! decision and rewrite, TWCC numbering and send history, our SRTP sender with the
//! AEAD_AES_128_GCM keys DTLS-SRTP negotiated on a real `rtc` connection), beside a lower bound
//! measured in the same run: the same header rewrite plus one in-place AES-128-GCM seal per
//! subscriber.
//!
//! Run: `cargo bench -p mescon-media --bench forwarding`. After criterion's groups it prints a
//! table of ns per forwarded packet and the ratio real / lower bound, timed back to back so
//! machine noise hits both sides alike.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use mescon_media::bench::ForwardBench;
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

fn main() {
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c);
    c.final_summary();
    ratio_table();
}
