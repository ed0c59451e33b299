//! Rate limits on the endpoints an attacker would hammer: OTP requests per phone and per IP, and
//! login attempts per IP. Exceeding one answers `429` with a `Retry-After`.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::config::Limits;

/// The keyed limiters.
#[derive(Debug)]
pub struct RateLimits {
    otp_phone: DefaultKeyedRateLimiter<String>,
    otp_ip: DefaultKeyedRateLimiter<IpAddr>,
    auth_ip: DefaultKeyedRateLimiter<IpAddr>,
    clock: DefaultClock,
}

/// A refused request: try again after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited(pub Duration);

fn quota_per_hour(n: u32) -> Quota {
    Quota::per_hour(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN))
}

impl RateLimits {
    /// Limiters sized from the configuration.
    pub fn new(limits: &Limits) -> RateLimits {
        RateLimits {
            otp_phone: DefaultKeyedRateLimiter::keyed(quota_per_hour(limits.otp_per_phone_hour)),
            otp_ip: DefaultKeyedRateLimiter::keyed(quota_per_hour(limits.otp_per_ip_hour)),
            auth_ip: DefaultKeyedRateLimiter::keyed(Quota::per_minute(
                NonZeroU32::new(limits.auth_per_ip_minute).unwrap_or(NonZeroU32::MIN),
            )),
            clock: DefaultClock::default(),
        }
    }

    fn verdict(
        &self,
        result: Result<(), governor::NotUntil<<DefaultClock as Clock>::Instant>>,
    ) -> Result<(), Limited> {
        result.map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            Limited(wait.max(Duration::from_secs(1)))
        })
    }

    /// An OTP request from `ip` for `phone`.
    pub fn otp_request(&self, ip: IpAddr, phone: &str) -> Result<(), Limited> {
        self.verdict(self.otp_ip.check_key(&ip))?;
        self.verdict(self.otp_phone.check_key(&phone.to_string()))
    }

    /// A verify or refresh attempt from `ip`.
    pub fn auth_attempt(&self, ip: IpAddr) -> Result<(), Limited> {
        self.verdict(self.auth_ip.check_key(&ip))
    }

    /// Forgets keys whose limits have fully replenished, bounding memory.
    pub fn sweep(&self) {
        self.otp_phone.retain_recent();
        self.otp_ip.retain_recent();
        self.auth_ip.retain_recent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_phone: u32, per_ip: u32) -> Limits {
        Limits {
            otp_per_phone_hour: per_phone,
            otp_per_ip_hour: per_ip,
            auth_per_ip_minute: 2,
            max_json_bytes: 65536,
            max_avatar_bytes: 1,
        }
    }

    #[test]
    fn per_phone_and_per_ip_limits_bite_separately() {
        let r = RateLimits::new(&limits(2, 3));
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        assert!(r.otp_request(ip, "+1").is_ok());
        assert!(r.otp_request(ip, "+1").is_ok());
        let Limited(wait) = r.otp_request(ip, "+1").expect_err("third for the phone");
        assert!(wait >= Duration::from_secs(60), "{wait:?}");
        assert!(
            r.otp_request(ip, "+2").is_err(),
            "the IP's budget (3) is spent by now"
        );
        assert!(
            r.otp_request("192.0.2.2".parse().expect("ip"), "+2")
                .is_ok()
        );
    }

    #[test]
    fn auth_attempts_are_limited_per_ip() {
        let r = RateLimits::new(&limits(1, 1));
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        assert!(r.auth_attempt(ip).is_ok());
        assert!(r.auth_attempt(ip).is_ok());
        assert!(r.auth_attempt(ip).is_err());
    }
}
