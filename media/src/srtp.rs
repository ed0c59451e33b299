//! Our own SRTP sender for subscriber connections: the forwarding path encrypts each packet once,
//! in place, straight into the datagram that leaves, instead of walking it through the peer
//! connection's handler pipeline (marshal, interceptor queues, a fresh buffer per packet).
//!
//! `rtc` 0.21 keeps a connection's SRTP keying material private, but it builds its SRTP contexts
//! through the pluggable crypto provider of the connection's setting engine. [`KeyCapture`] is
//! that provider: it delegates every operation to the built-in one and remembers the first SRTP
//! key derivation it sees. `rtc` derives the local (sending) context before the remote one, so
//! that first derivation carries our master key and salt (RFC 3711 §4.3, RFC 5764 §4.2). The
//! capture is checked against the session key `rtc` itself derived before it is used, and
//! `srtp_keys_match_the_peer_connection` (bench module) proves a real `rtc` receiver decrypts
//! what we send.

use std::sync::{Arc, Mutex};

use rtc::crypto::{
    ActiveKeyExchange, AeadAlgorithm, AeadCipher, BlockCipherAlgorithm, CbcAlgorithm, CbcCipher,
    CryptoAlgorithm, CryptoError, HashAlgorithm, HmacAlgorithm, KeyExchangeAlgorithm, Mac,
    PublicKey, RTCCrypto, RTCCryptoProvider, RTCRandom, SignatureScheme, SigningKey, StreamCipher,
    StreamCipherAlgorithm,
};

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

/// What the capture has seen so far.
#[derive(Default)]
struct Seen {
    /// The first SRTP key-derivation block: (master key, input block, output block).
    first_block: Option<([u8; 16], [u8; 16], [u8; 16])>,
    /// The keys, once the cipher built from that derivation confirmed them.
    keys: Option<MasterKeys>,
    /// A cipher built after the first derivation did not use its output: not what we expect.
    mismatch: bool,
}

/// A crypto provider for one peer connection that remembers its local SRTP master key.
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

    /// The local master keys, once DTLS-SRTP has produced and `rtc` has used them.
    pub fn keys(&self) -> Result<MasterKeys> {
        let seen = self.seen.lock().map_err(|_| Error::Srtp("poisoned"))?;
        if seen.mismatch {
            return Err(Error::Srtp("SRTP key derivation not recognised"));
        }
        seen.keys.clone().ok_or(Error::Srtp("no SRTP keys yet"))
    }

    fn on_block(&self, algorithm: BlockCipherAlgorithm, key: &[u8], input: [u8; 16], out: &[u8]) {
        let (Ok(mut seen), BlockCipherAlgorithm::Aes128) = (self.seen.lock(), algorithm) else {
            return;
        };
        if seen.first_block.is_some() || key.len() != 16 || out.len() != 16 {
            return;
        }
        let mut k = [0u8; 16];
        k.copy_from_slice(key);
        let mut o = [0u8; 16];
        o.copy_from_slice(out);
        seen.first_block = Some((k, input, o));
    }

    /// The first cipher keyed after the first derivation names the profile, and its key must be
    /// that derivation's output: label 0 (SRTP encryption), block 0.
    fn on_cipher(&self, profile: Profile, session_key: &[u8]) {
        let Ok(mut seen) = self.seen.lock() else {
            return;
        };
        let Some((master, input, out)) = seen.first_block else {
            return;
        };
        if seen.keys.is_some() || seen.mismatch {
            return;
        }
        // Block 0 of label 0 is the master salt, zero-padded, unchanged (RFC 3711 §4.3.1).
        let salt_len = profile.salt_len();
        let derived = session_key == out && input[salt_len..].iter().all(|&b| b == 0);
        match derived
            .then(|| MasterKeys::new(profile, master, &input[..salt_len]))
            .and_then(|r| r.ok())
        {
            Some(keys) => seen.keys = Some(keys),
            None => seen.mismatch = true,
        }
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

/// The cipher state of one profile.
enum Cipher {
    Gcm(Box<dyn AeadCipher>),
    CmSha1 {
        ctr: Box<dyn StreamCipher>,
        mac: Box<dyn Mac>,
    },
}

/// Encrypts RTP packets for one connection (all its SSRCs) in place.
pub struct SrtpSender {
    profile: Profile,
    cipher: Cipher,
    salt: [u8; 14],
}

impl SrtpSender {
    /// Derives the session keys (RFC 3711 §4.3, AES-CM PRF) and keys the cipher.
    pub fn new(keys: &MasterKeys) -> Result<Self> {
        let provider = rtc::crypto::default_provider().map_err(|_| Error::Srtp("no crypto"))?;
        let crypto = provider.crypto();
        let kdf = |label: u8, len: usize| -> Result<Vec<u8>> {
            let mut out = Vec::with_capacity(len.div_ceil(16) * 16);
            for i in 0..len.div_ceil(16) as u16 {
                let mut block = [0u8; 16];
                block[..keys.profile.salt_len()].copy_from_slice(keys.salt());
                block[7] ^= label;
                block[14..].copy_from_slice(&i.to_be_bytes());
                crypto
                    .block_encrypt(BlockCipherAlgorithm::Aes128, &keys.key, &mut block)
                    .map_err(|_| Error::Srtp("key derivation"))?;
                out.extend_from_slice(&block);
            }
            out.truncate(len);
            Ok(out)
        };
        let session_key = kdf(0x00, 16)?;
        let mut salt = [0u8; 14];
        let salt_len = keys.profile.salt_len();
        salt[..salt_len].copy_from_slice(&kdf(0x02, salt_len)?);
        let cipher = match keys.profile {
            Profile::AeadAes128Gcm => Cipher::Gcm(
                crypto
                    .new_aead(AeadAlgorithm::Aes128Gcm, &session_key)
                    .map_err(|_| Error::Srtp("AES-GCM key"))?,
            ),
            Profile::Aes128CmHmacSha1_80 => Cipher::CmSha1 {
                ctr: crypto
                    .new_stream_cipher(StreamCipherAlgorithm::Aes128Ctr, &session_key)
                    .map_err(|_| Error::Srtp("AES-CM key"))?,
                mac: crypto
                    .new_hmac(HmacAlgorithm::Sha1, &kdf(0x01, 20)?)
                    .map_err(|_| Error::Srtp("HMAC key"))?,
            },
        };
        Ok(Self {
            profile: keys.profile,
            cipher,
            salt,
        })
    }

    /// The profile in use.
    pub fn profile(&self) -> Profile {
        self.profile
    }

    /// Turns the RTP packet in `buf` (header of `header_len` bytes, then payload) into SRTP:
    /// the payload encrypted in place, the tag appended. `roc` is the stream's rollover counter
    /// for this packet (see [`Roc`]).
    pub fn protect(
        &mut self,
        buf: &mut Vec<u8>,
        header_len: usize,
        ssrc: u32,
        seq: u16,
        roc: u32,
    ) -> Result<()> {
        if buf.len() < header_len {
            return Err(Error::Srtp("short packet"));
        }
        match &mut self.cipher {
            Cipher::Gcm(aead) => {
                // RFC 7714 §8.1: 00 00 | SSRC | ROC | SEQ, XOR the 12-byte session salt.
                let mut iv = [0u8; 12];
                iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
                iv[6..10].copy_from_slice(&roc.to_be_bytes());
                iv[10..12].copy_from_slice(&seq.to_be_bytes());
                for (b, s) in iv.iter_mut().zip(&self.salt) {
                    *b ^= s;
                }
                let mut tag = [0u8; 16];
                let (aad, payload) = buf.split_at_mut(header_len);
                aead.seal_in_place(&iv, aad, payload, &mut tag)
                    .map_err(|_| Error::Srtp("seal"))?;
                buf.extend_from_slice(&tag);
            }
            Cipher::CmSha1 { ctr, mac } => {
                // RFC 3711 §4.1.1: salt·2^16 XOR SSRC·2^64 XOR index·2^16.
                let mut iv = [0u8; 16];
                iv[..14].copy_from_slice(&self.salt);
                for (b, x) in iv[4..8].iter_mut().zip(ssrc.to_be_bytes()) {
                    *b ^= x;
                }
                for (b, x) in iv[8..12].iter_mut().zip(roc.to_be_bytes()) {
                    *b ^= x;
                }
                for (b, x) in iv[12..14].iter_mut().zip(seq.to_be_bytes()) {
                    *b ^= x;
                }
                ctr.apply_keystream(&iv, &mut buf[header_len..])
                    .map_err(|_| Error::Srtp("encrypt"))?;
                let mut tag = [0u8; 20];
                mac.sign(&[buf.as_slice(), &roc.to_be_bytes()], &mut tag)
                    .map_err(|_| Error::Srtp("authenticate"))?;
                buf.extend_from_slice(&tag[..10]);
            }
        }
        Ok(())
    }
}

/// The rollover counter of one outgoing stream (RFC 3711 §3.3.1): sequence numbers extended to
/// 48 bits, older ones (retransmissions) placed before a wrap they precede.
#[derive(Debug, Default, Clone, Copy)]
pub struct Roc {
    highest: Option<u64>,
}

impl Roc {
    /// The ROC for `seq`, remembering it if it is the newest so far.
    pub fn next(&mut self, seq: u16) -> u32 {
        let ext = match self.highest {
            None => seq as u64,
            Some(h) => {
                let ext = (h & !0xffff) | seq as u64;
                if ext + 0x8000 < h {
                    ext + 0x1_0000
                } else if ext > h + 0x8000 && ext >= 0x1_0000 {
                    ext - 0x1_0000
                } else {
                    ext
                }
            }
        };
        if self.highest.is_none_or(|h| ext > h) {
            self.highest = Some(ext);
        }
        (ext >> 16) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::shared::marshal::Marshal;
    use rtc::srtp::context::Context;
    use rtc::srtp::protection_profile::ProtectionProfile;

    fn packet(ssrc: u32, seq: u16, payload: &[u8]) -> Vec<u8> {
        let header = rtc::rtp::header::Header {
            version: 2,
            payload_type: 96,
            sequence_number: seq,
            timestamp: 12345,
            ssrc,
            ..Default::default()
        };
        let mut buf = header.marshal().expect("header").to_vec();
        buf.extend_from_slice(payload);
        buf
    }

    /// Our sender and `rtc`'s SRTP context agree byte for byte, across a sequence wrap.
    fn matches_rtc(profile: Profile, rtc_profile: ProtectionProfile) {
        let key = [0x11u8; 16];
        let salt: Vec<u8> = (0..profile.salt_len() as u8).collect();
        let keys = MasterKeys::new(profile, key, &salt).expect("keys");
        let mut ours = SrtpSender::new(&keys).expect("sender");
        let provider = rtc::crypto::default_provider().expect("provider");
        let mut theirs =
            Context::new(&key, &salt, rtc_profile, None, None, provider.crypto()).expect("context");
        let mut roc = Roc::default();
        for seq in (65530u16..=65535).chain(0..5) {
            let plain = packet(0xfeed, seq, &[seq as u8; 300]);
            let expected = theirs.encrypt_rtp(&plain).expect("rtc encrypts");
            let mut buf = plain.clone();
            ours.protect(&mut buf, 12, 0xfeed, seq, roc.next(seq))
                .expect("we encrypt");
            assert_eq!(buf, expected.to_vec(), "seq {seq}");
            assert_eq!(buf.len(), plain.len() + profile.tag_len());
        }
    }

    #[test]
    fn gcm_matches_rtc() {
        matches_rtc(Profile::AeadAes128Gcm, ProtectionProfile::AeadAes128Gcm);
    }

    #[test]
    fn cm_sha1_matches_rtc() {
        matches_rtc(
            Profile::Aes128CmHmacSha1_80,
            ProtectionProfile::Aes128CmHmacSha1_80,
        );
    }

    #[test]
    fn roc_counts_wraps_and_places_late_packets_before_them() {
        let mut r = Roc::default();
        assert_eq!(r.next(65534), 0);
        assert_eq!(r.next(65535), 0);
        assert_eq!(r.next(0), 1);
        assert_eq!(r.next(65533), 0, "a retransmission from before the wrap");
        assert_eq!(r.next(1), 1);
        assert_eq!(r.next(30000), 1);
        assert_eq!(r.next(60000), 1);
        assert_eq!(r.next(10), 2);
    }

    #[test]
    fn capture_recognises_an_srtp_key_derivation_and_nothing_else() {
        let capture = KeyCapture::new().expect("capture");
        assert!(capture.keys().is_err(), "nothing seen yet");
        // A DTLS record key (AEAD before any block derivation) is not taken for SRTP.
        let crypto: &dyn RTCCrypto = capture.as_ref();
        crypto
            .new_aead(AeadAlgorithm::Aes128Gcm, &[9u8; 16])
            .expect("aead");
        assert!(capture.keys().is_err());
        // What rtc-srtp does for the local context, then the remote one.
        let provider = rtc::crypto::default_provider().expect("provider");
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
            let _ = provider;
        }
        let keys = capture.keys().expect("captured");
        assert_eq!(keys.profile, Profile::AeadAes128Gcm);
        assert_eq!(keys.key(), &[0x21u8; 16], "the first (local) context's key");
        assert_eq!(keys.salt(), &[0x31u8; 12]);
    }
}
