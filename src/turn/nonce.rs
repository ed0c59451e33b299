//! NONCEs of long-term authentication (RFC 8489 §9.2). The map is the very one the `turn` crate's
//! request handler checks, so a nonce we issue in a 401/438 is one it accepts, and we can bound and
//! sweep it: the crate only ever removes a nonce when a client reuses it after expiry, so unanswered
//! challenges (one per unauthenticated packet) would otherwise pile up forever.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

/// How long a nonce stays valid; coturn's default. Shorter than the crate's own hour, so our check
/// always runs out first and the crate never disagrees with an answer of ours.
pub const NONCE_LIFETIME: Duration = Duration::from_secs(600);

/// Most nonces held at once. Past it, the oldest are forgotten and their clients get one 438 more.
const MAX_NONCES: usize = 50_000;

/// The shared nonce map.
#[derive(Debug, Clone, Default)]
pub struct Nonces {
    map: Arc<Mutex<HashMap<String, Instant>>>,
}

/// What a client's nonce is worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceState {
    /// Issued by us and still valid.
    Fresh,
    /// Unknown or expired: the client must retry with a new one (438).
    Stale,
}

impl Nonces {
    /// The map in the form the `turn` crate's `Request` takes.
    pub fn shared_map(&self) -> Arc<Mutex<HashMap<String, Instant>>> {
        self.map.clone()
    }

    /// Issues a new random nonce.
    pub async fn issue(&self) -> String {
        let mut bytes = [0u8; 16];
        rand::fill(&mut bytes);
        let nonce = hex::encode(bytes);
        let now = Instant::now();
        let mut map = self.map.lock().await;
        if map.len() >= MAX_NONCES {
            map.retain(|_, issued| now.duration_since(*issued) < NONCE_LIFETIME);
            if map.len() >= MAX_NONCES {
                // Still full of live nonces: a flood of unauthenticated packets. Start over rather
                // than grow; real clients just answer one more 438.
                map.clear();
            }
        }
        map.insert(nonce.clone(), now);
        nonce
    }

    /// Checks a nonce presented by a client.
    pub async fn check(&self, nonce: &str) -> NonceState {
        self.check_at(nonce, Instant::now()).await
    }

    async fn check_at(&self, nonce: &str, now: Instant) -> NonceState {
        let map = self.map.lock().await;
        match map.get(nonce) {
            Some(issued) if now.saturating_duration_since(*issued) < NONCE_LIFETIME => {
                NonceState::Fresh
            }
            _ => NonceState::Stale,
        }
    }

    /// Forgets expired nonces (called periodically).
    pub async fn sweep(&self) {
        self.sweep_at(Instant::now()).await
    }

    async fn sweep_at(&self, now: Instant) {
        self.map
            .lock()
            .await
            .retain(|_, issued| now.duration_since(*issued) < NONCE_LIFETIME);
    }

    #[cfg(test)]
    async fn count(&self) -> usize {
        self.map.lock().await.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn nonces_expire_and_are_swept() {
        let nonces = Nonces::default();
        let n = nonces.issue().await;
        assert_eq!(n.len(), 32);
        assert_eq!(nonces.check(&n).await, NonceState::Fresh);
        assert_eq!(nonces.check("made-up").await, NonceState::Stale);
        let later = Instant::now() + NONCE_LIFETIME;
        assert_eq!(nonces.check_at(&n, later).await, NonceState::Stale);
        nonces.sweep().await;
        assert_eq!(nonces.count().await, 1, "a fresh nonce survives a sweep");
        nonces.sweep_at(later).await;
        assert_eq!(nonces.count().await, 0);
    }
}
