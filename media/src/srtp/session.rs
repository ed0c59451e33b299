//! The session keys of one SRTP direction (RFC 3711 §4.3, AES-CM PRF) and the per-packet IVs of
//! both profiles: what sending and receiving share.

use rtc::crypto::{
    AeadAlgorithm, AeadCipher, BlockCipherAlgorithm, HmacAlgorithm, Mac, StreamCipher,
    StreamCipherAlgorithm,
};

use super::{MasterKeys, Profile};
use crate::error::{Error, Result};

/// The keyed cipher of one profile.
pub(super) enum Cipher {
    Gcm(Box<dyn AeadCipher>),
    CmSha1 {
        ctr: Box<dyn StreamCipher>,
        mac: Box<dyn Mac>,
    },
}

/// One direction's session: the cipher keyed with the session key, and the session salt.
pub(super) struct Session {
    pub profile: Profile,
    pub cipher: Cipher,
    pub salt: [u8; 14],
}

impl Session {
    /// Derives the session keys from master keys and keys the cipher.
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
}

/// RFC 7714 §8.1: `00 00 | SSRC | ROC | SEQ`, XOR the 12-byte session salt.
#[inline]
pub(super) fn gcm_iv(salt: &[u8; 14], ssrc: u32, roc: u32, seq: u16) -> [u8; 12] {
    let mut iv = [0u8; 12];
    iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
    iv[6..10].copy_from_slice(&roc.to_be_bytes());
    iv[10..12].copy_from_slice(&seq.to_be_bytes());
    for (b, s) in iv.iter_mut().zip(salt) {
        *b ^= s;
    }
    iv
}

/// RFC 3711 §4.1.1: salt·2^16 XOR SSRC·2^64 XOR index·2^16.
#[inline]
pub(super) fn cm_iv(salt: &[u8; 14], ssrc: u32, roc: u32, seq: u16) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv[..14].copy_from_slice(salt);
    for (b, x) in iv[4..8].iter_mut().zip(ssrc.to_be_bytes()) {
        *b ^= x;
    }
    for (b, x) in iv[8..12].iter_mut().zip(roc.to_be_bytes()) {
        *b ^= x;
    }
    for (b, x) in iv[12..14].iter_mut().zip(seq.to_be_bytes()) {
        *b ^= x;
    }
    iv
}
