//! How long forwarded packets spend inside the SFU: from the moment the publisher's datagram
//! reached the host (the kernel's receive stamp, so the time it waited in the socket buffer
//! counts) to the moment the subscriber's datagram was handed to the kernel.

use std::time::Duration;

/// Below this many microseconds every microsecond has its own bucket.
const LINEAR: u64 = 64;
/// Buckets per doubling above that (about 6 % resolution).
const PER_OCTAVE: u64 = 16;
/// Enough octaves to reach minutes; anything longer lands in the last bucket.
const BUCKETS: usize = (LINEAR + 21 * PER_OCTAVE) as usize;

/// A log-linear histogram of delays with microsecond resolution at the low end.
#[derive(Clone, PartialEq, Eq)]
pub struct DelayHistogram {
    counts: Box<[u64; BUCKETS]>,
    total: u64,
}

impl Default for DelayHistogram {
    fn default() -> Self {
        Self {
            counts: Box::new([0; BUCKETS]),
            total: 0,
        }
    }
}

impl std::fmt::Debug for DelayHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DelayHistogram")
            .field("count", &self.total)
            .field("p50", &self.quantile(0.5))
            .field("p99", &self.quantile(0.99))
            .finish()
    }
}

fn bucket_of(us: u64) -> usize {
    if us < LINEAR {
        return us as usize;
    }
    let octave = 63 - us.leading_zeros() as u64; // >= 6
    let sub = (us >> (octave - 4)) & (PER_OCTAVE - 1);
    ((LINEAR + (octave - 6) * PER_OCTAVE + sub) as usize).min(BUCKETS - 1)
}

/// The smallest delay in microseconds that falls in bucket `i`.
fn lower_bound(i: usize) -> u64 {
    let i = i as u64;
    if i < LINEAR {
        return i;
    }
    let octave = 6 + (i - LINEAR) / PER_OCTAVE;
    let sub = (i - LINEAR) % PER_OCTAVE;
    (PER_OCTAVE + sub) << (octave - 4)
}

impl DelayHistogram {
    /// Counts one delay.
    #[inline]
    pub fn record(&mut self, delay: Duration) {
        let us = delay.as_micros().min(u64::MAX as u128) as u64;
        self.counts[bucket_of(us)] += 1;
        self.total += 1;
    }

    /// Adds another histogram's counts (several workers).
    pub fn merge(&mut self, other: &DelayHistogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.total += other.total;
    }

    /// What was recorded since `earlier`, a snapshot of this same histogram.
    pub fn since(&self, earlier: &DelayHistogram) -> DelayHistogram {
        let mut out = self.clone();
        for (a, b) in out.counts.iter_mut().zip(earlier.counts.iter()) {
            *a = a.saturating_sub(*b);
        }
        out.total = self.total.saturating_sub(earlier.total);
        out
    }

    /// Delays recorded.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The delay below which a fraction `q` of the recorded ones fall (the upper edge of the
    /// bucket holding that rank), or `None` if nothing was recorded.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        if self.total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let upper = if i + 1 < BUCKETS {
                    lower_bound(i + 1)
                } else {
                    lower_bound(i)
                };
                return Some(Duration::from_micros(upper));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_ordered() {
        for i in 1..BUCKETS {
            assert!(lower_bound(i) > lower_bound(i - 1), "bucket {i}");
            assert_eq!(bucket_of(lower_bound(i)), i);
            assert_eq!(bucket_of(lower_bound(i) - 1), i - 1);
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn quantiles_within_the_bucket_resolution() {
        let mut h = DelayHistogram::default();
        assert_eq!(h.quantile(0.5), None);
        for us in 1..=1000u64 {
            h.record(Duration::from_micros(us));
        }
        let p50 = h.quantile(0.5).expect("p50").as_micros() as f64;
        let p99 = h.quantile(0.99).expect("p99").as_micros() as f64;
        assert!((500.0..=500.0 * 1.07).contains(&p50), "p50 {p50}");
        assert!((990.0..=990.0 * 1.07).contains(&p99), "p99 {p99}");
        let earlier = h.clone();
        for _ in 0..10 {
            h.record(Duration::from_millis(50));
        }
        let recent = h.since(&earlier);
        assert_eq!(recent.count(), 10);
        let p50 = recent.quantile(0.5).expect("p50").as_micros();
        assert!((50_000..=53_500).contains(&p50), "p50 {p50}");
        let mut merged = earlier.clone();
        merged.merge(&recent);
        assert_eq!(merged.count(), h.count());
    }
}
