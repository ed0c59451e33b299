//! Authentication: one-time passwords by phone, then sessions with short access tokens and rotating
//! refresh tokens, guarded by rate limits.

pub mod otp;
pub mod ratelimit;
pub mod sender;
pub mod tokens;

pub use otp::{OtpError, OtpService};
pub use ratelimit::RateLimits;
pub use sender::OtpSender;
pub use tokens::{AccessClaims, Tokens};
