//! [`KeyCapture`]: the crypto provider that learns a connection's local SRTP master key.

use std::sync::{Arc, Mutex};

use rtc::crypto::{
    ActiveKeyExchange, AeadAlgorithm, AeadCipher, BlockCipherAlgorithm, CbcAlgorithm, CbcCipher,
    CryptoAlgorithm, CryptoError, HashAlgorithm, HmacAlgorithm, KeyExchangeAlgorithm, Mac,
    PublicKey, RTCCrypto, RTCCryptoProvider, RTCRandom, SignatureScheme, SigningKey, StreamCipher,
    StreamCipherAlgorithm,
};

use super::{MasterKeys, Profile};
use crate::error::{Error, Result};

/// Master keys a connection uses at most: ours and the remote side's.
const DIRECTIONS: usize = 2;

/// What the capture has seen so far.
#[derive(Default)]
struct Seen {
    /// The first SRTP key-derivation block of each master key, in order (ours, then the remote
    /// side's): (master key, input block, output block).
    first_blocks: Vec<([u8; 16], [u8; 16], [u8; 16])>,
    /// For each of those, in the same order, the keys once the cipher built from that
    /// derivation confirmed them, or `None` if the next cipher did not use its output.
    keys: Vec<Option<MasterKeys>>,
}

/// A crypto provider for one peer connection that remembers its SRTP master keys.
pub struct KeyCapture {
    inner: Arc<dyn RTCCryptoProvider>,
    seen: Mutex<Seen>,
}

impl KeyCapture {
    /// A capture over the built-in provider.
    pub fn new() -> Result<Arc<Self>> {
        let inner = rtc::crypto::default_provider().map_err(|_| Error::Srtp("no crypto"))?;
        Ok(Arc::new(Self {
            inner,
            seen: Mutex::new(Seen::default()),
        }))
    }

    /// Our (sending) master keys, once DTLS-SRTP has produced and `rtc` has used them.
    pub fn keys(&self) -> Result<MasterKeys> {
        self.direction(0)
    }

    /// The remote side's (receiving) master keys, likewise.
    pub fn remote_keys(&self) -> Result<MasterKeys> {
        self.direction(1)
    }

    fn direction(&self, i: usize) -> Result<MasterKeys> {
        let seen = self.seen.lock().map_err(|_| Error::Srtp("poisoned"))?;
        match seen.keys.get(i) {
            Some(Some(keys)) => Ok(keys.clone()),
            Some(None) => Err(Error::Srtp("SRTP key derivation not recognised")),
            None => Err(Error::Srtp("no SRTP keys yet")),
        }
    }

    fn on_block(&self, algorithm: BlockCipherAlgorithm, key: &[u8], input: [u8; 16], out: &[u8]) {
        let (Ok(mut seen), BlockCipherAlgorithm::Aes128) = (self.seen.lock(), algorithm) else {
            return;
        };
        if seen.first_blocks.len() >= DIRECTIONS
            || key.len() != 16
            || out.len() != 16
            || seen.first_blocks.iter().any(|(k, _, _)| k == key)
        {
            return;
        }
        let mut k = [0u8; 16];
        k.copy_from_slice(key);
        let mut o = [0u8; 16];
        o.copy_from_slice(out);
        seen.first_blocks.push((k, input, o));
    }

    /// The first cipher keyed after a master key's first derivation names the profile, and its
    /// key must be that derivation's output: label 0 (SRTP encryption), block 0. Ciphers keyed
    /// at other times (DTLS records, SRTCP) are none of our business.
    fn on_cipher(&self, profile: Profile, session_key: &[u8]) {
        let Ok(mut seen) = self.seen.lock() else {
            return;
        };
        let Some(&(master, input, out)) = seen.first_blocks.get(seen.keys.len()) else {
            return;
        };
        // Block 0 of label 0 is the master salt, zero-padded, unchanged (RFC 3711 §4.3.1).
        let salt_len = profile.salt_len();
        let derived = session_key == out && input[salt_len..].iter().all(|&b| b == 0);
        let keys = derived
            .then(|| MasterKeys::new(profile, master, &input[..salt_len]))
            .and_then(|r| r.ok());
        seen.keys.push(keys);
    }
}

impl RTCCryptoProvider for KeyCapture {
    fn name(&self) -> &'static str {
        "mescon-key-capture"
    }

    fn crypto(&self) -> &dyn RTCCrypto {
        self
    }

    fn random(&self) -> &dyn RTCRandom {
        self.inner.random()
    }
}

impl RTCCrypto for KeyCapture {
    fn supports(&self, algorithm: CryptoAlgorithm) -> bool {
        self.inner.crypto().supports(algorithm)
    }

    fn hash(
        &self,
        algorithm: HashAlgorithm,
        data: &[u8],
    ) -> std::result::Result<Vec<u8>, CryptoError> {
        self.inner.crypto().hash(algorithm, data)
    }

    fn block_encrypt(
        &self,
        algorithm: BlockCipherAlgorithm,
        key: &[u8],
        block: &mut [u8],
    ) -> std::result::Result<(), CryptoError> {
        let mut input = [0u8; 16];
        let whole = block.len() == 16;
        if whole {
            input.copy_from_slice(block);
        }
        self.inner.crypto().block_encrypt(algorithm, key, block)?;
        if whole {
            self.on_block(algorithm, key, input, block);
        }
        Ok(())
    }

    fn new_hmac(
        &self,
        algorithm: HmacAlgorithm,
        key: &[u8],
    ) -> std::result::Result<Box<dyn Mac>, CryptoError> {
        self.inner.crypto().new_hmac(algorithm, key)
    }

    fn new_stream_cipher(
        &self,
        algorithm: StreamCipherAlgorithm,
        key: &[u8],
    ) -> std::result::Result<Box<dyn StreamCipher>, CryptoError> {
        if algorithm == StreamCipherAlgorithm::Aes128Ctr {
            self.on_cipher(Profile::Aes128CmHmacSha1_80, key);
        }
        self.inner.crypto().new_stream_cipher(algorithm, key)
    }

    fn new_aead(
        &self,
        algorithm: AeadAlgorithm,
        key: &[u8],
    ) -> std::result::Result<Box<dyn AeadCipher>, CryptoError> {
        if algorithm == AeadAlgorithm::Aes128Gcm {
            self.on_cipher(Profile::AeadAes128Gcm, key);
        }
        self.inner.crypto().new_aead(algorithm, key)
    }

    fn new_cbc(
        &self,
        algorithm: CbcAlgorithm,
        key: &[u8],
    ) -> std::result::Result<Box<dyn CbcCipher>, CryptoError> {
        self.inner.crypto().new_cbc(algorithm, key)
    }

    fn start_key_exchange(
        &self,
        algorithm: KeyExchangeAlgorithm,
    ) -> std::result::Result<Box<dyn ActiveKeyExchange>, CryptoError> {
        self.inner.crypto().start_key_exchange(algorithm)
    }

    fn generate_signing_key(
        &self,
        scheme: SignatureScheme,
    ) -> std::result::Result<Arc<dyn SigningKey>, CryptoError> {
        self.inner.crypto().generate_signing_key(scheme)
    }

    fn import_signing_key(
        &self,
        scheme: SignatureScheme,
        pkcs8_der: &[u8],
    ) -> std::result::Result<Arc<dyn SigningKey>, CryptoError> {
        self.inner.crypto().import_signing_key(scheme, pkcs8_der)
    }

    fn verify_signature(
        &self,
        scheme: SignatureScheme,
        public_key: PublicKey<'_>,
        message: &[u8],
        signature: &[u8],
    ) -> std::result::Result<(), CryptoError> {
        self.inner
            .crypto()
            .verify_signature(scheme, public_key, message, signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::srtp::context::Context;
    use rtc::srtp::protection_profile::ProtectionProfile;

    #[test]
    fn capture_recognises_an_srtp_key_derivation_and_nothing_else() {
        let capture = KeyCapture::new().expect("capture");
        assert!(capture.keys().is_err(), "nothing seen yet");
        assert!(capture.remote_keys().is_err());
        // A DTLS record key (AEAD before any block derivation) is not taken for SRTP.
        let crypto: &dyn RTCCrypto = capture.as_ref();
        crypto
            .new_aead(AeadAlgorithm::Aes128Gcm, &[9u8; 16])
            .expect("aead");
        assert!(capture.keys().is_err());
        // What rtc-srtp does for the local context, then the remote one.
        for (key, salt) in [([0x21u8; 16], [0x31u8; 12]), ([0x22u8; 16], [0x32u8; 12])] {
            let _ = Context::new(
                &key,
                &salt,
                ProtectionProfile::AeadAes128Gcm,
                None,
                None,
                crypto,
            )
            .expect("context");
        }
        let keys = capture.keys().expect("captured");
        assert_eq!(keys.profile, Profile::AeadAes128Gcm);
        assert_eq!(keys.key(), &[0x21u8; 16], "the first (local) context's key");
        assert_eq!(keys.salt(), &[0x31u8; 12]);
        let remote = capture.remote_keys().expect("captured");
        assert_eq!(
            remote.key(),
            &[0x22u8; 16],
            "the second (remote) context's key"
        );
        assert_eq!(remote.salt(), &[0x32u8; 12]);
    }
}
