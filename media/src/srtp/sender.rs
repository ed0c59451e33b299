//! [`SrtpSender`]: both SRTP profiles' protection of RTP, in place, for one connection.

use rtc::crypto::{
    AeadAlgorithm, AeadCipher, BlockCipherAlgorithm, HmacAlgorithm, Mac, StreamCipher,
    StreamCipherAlgorithm,
};

use super::{MasterKeys, Profile};
use crate::error::{Error, Result};

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
}
