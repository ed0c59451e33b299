//! Pure packet helpers: no sockets, no peer connections, so unit tests and benches drive them
//! directly.

pub mod cache;
pub mod codec;
pub mod rewrite;
pub mod rrid;

/// Signed distance from `b` to `a` in 16-bit sequence space (RFC 3550 wraparound aware).
#[inline]
pub fn seq_diff(a: u16, b: u16) -> i16 {
    a.wrapping_sub(b) as i16
}
