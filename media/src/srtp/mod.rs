//! Our own SRTP for media: the forwarding path encrypts each packet once, in place, straight into
//! the datagram that leaves ([`SrtpSender`], subscriber connections), and decrypts a publisher's
//! media in place in the datagram that arrived ([`SrtpReceiver`]), instead of walking either
//! through the peer connection's handler pipeline (parsing twice, handler queues, a fresh buffer
//! per packet). RTCP, ICE and DTLS stay with the peer connection.
//!
//! `rtc` 0.21 keeps a connection's SRTP keying material private, but it builds its SRTP contexts
//! through the pluggable crypto provider of the connection's setting engine. [`KeyCapture`] is
//! that provider: it delegates every operation to the built-in one and remembers the first SRTP
//! key derivation of each master key it sees. `rtc` derives the local (sending) context before
//! the remote one, so the first carries our master key and salt, the second the remote side's
//! (RFC 3711 §4.3, RFC 5764 §4.2). Each capture is checked against the session key `rtc` itself
//! derived before it is used; `srtp_keys_match_the_peer_connection` (bench module) proves a real
//! `rtc` receiver decrypts what we send, and `remote_keys_decrypt_the_publisher` that we decrypt
//! what a real `rtc` sender sends.

mod capture;
mod receiver;
mod sender;
mod session;

pub use capture::KeyCapture;
pub use receiver::SrtpReceiver;
pub use sender::{Roc, SrtpSender};

use crate::error::{Error, Result};

/// The SRTP protection profiles we offer (AES-GCM preferred, RFC 7714; AES-CM/HMAC-SHA1-80 as
/// the fallback every endpoint implements).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// SRTP_AEAD_AES_128_GCM: 12-byte salt, 16-byte tag.
    AeadAes128Gcm,
    /// SRTP_AES128_CM_HMAC_SHA1_80: 14-byte salt, 10-byte tag.
    Aes128CmHmacSha1_80,
}

impl Profile {
    fn salt_len(self) -> usize {
        match self {
            Profile::AeadAes128Gcm => 12,
            Profile::Aes128CmHmacSha1_80 => 14,
        }
    }

    /// Bytes the tag adds to each packet.
    pub fn tag_len(self) -> usize {
        match self {
            Profile::AeadAes128Gcm => 16,
            Profile::Aes128CmHmacSha1_80 => 10,
        }
    }
}

/// A master key and salt with the profile they serve.
#[derive(Clone)]
pub struct MasterKeys {
    /// The profile negotiated by DTLS-SRTP.
    pub profile: Profile,
    key: [u8; 16],
    salt: [u8; 14],
}

impl MasterKeys {
    /// Keys from their raw parts; `salt` must be as long as the profile's salt.
    pub fn new(profile: Profile, key: [u8; 16], salt: &[u8]) -> Result<Self> {
        if salt.len() != profile.salt_len() {
            return Err(Error::Srtp("master salt length"));
        }
        let mut s = [0u8; 14];
        s[..salt.len()].copy_from_slice(salt);
        Ok(Self {
            profile,
            key,
            salt: s,
        })
    }

    /// The master key (for cross-checks against other SRTP implementations).
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// The master salt.
    pub fn salt(&self) -> &[u8] {
        &self.salt[..self.profile.salt_len()]
    }
}

impl std::fmt::Debug for MasterKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKeys")
            .field("profile", &self.profile)
            .finish_non_exhaustive()
    }
}
