//! [`SrtpSender`]: both SRTP profiles' protection of RTP, in place, for one connection.

use super::session::{Cipher, Session, cm_iv, gcm_iv};
use super::{MasterKeys, Profile};
use crate::error::{Error, Result};

/// Encrypts RTP packets for one connection (all its SSRCs) in place.
pub struct SrtpSender {
    session: Session,
}

impl SrtpSender {
    /// Derives the session keys from the connection's local master keys.
    pub fn new(keys: &MasterKeys) -> Result<Self> {
        Ok(Self {
            session: Session::new(keys)?,
        })
    }

    /// The profile in use.
    pub fn profile(&self) -> Profile {
        self.session.profile
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
        match &mut self.session.cipher {
            Cipher::Gcm(aead) => {
                let iv = gcm_iv(&self.session.salt, ssrc, roc, seq);
                let mut tag = [0u8; 16];
                let (aad, payload) = buf.split_at_mut(header_len);
                aead.seal_in_place(&iv, aad, payload, &mut tag)
                    .map_err(|_| Error::Srtp("seal"))?;
                buf.extend_from_slice(&tag);
            }
            Cipher::CmSha1 { ctr, mac } => {
                let iv = cm_iv(&self.session.salt, ssrc, roc, seq);
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

/// The rollover counter of one stream (RFC 3711 §3.3.1): sequence numbers extended to 48 bits,
/// older ones (retransmissions, late arrivals) placed before a wrap they precede.
#[derive(Debug, Default, Clone, Copy)]
pub struct Roc {
    highest: Option<u64>,
}

impl Roc {
    /// The ROC for `seq`, remembering it if it is the newest so far (the sending side, where
    /// every packet is ours and so authentic).
    pub fn next(&mut self, seq: u16) -> u32 {
        let index = self.index(seq);
        self.accept(index);
        (index >> 16) as u32
    }

    /// The 48-bit packet index `seq` most likely has, without remembering it: a receiver only
    /// remembers an index once the packet authenticated.
    pub fn index(&self, seq: u16) -> u64 {
        match self.highest {
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
        }
    }

    /// Remembers `index` if it is the newest so far.
    pub fn accept(&mut self, index: u64) {
        if self.highest.is_none_or(|h| index > h) {
            self.highest = Some(index);
        }
    }

    /// The newest index remembered.
    pub fn highest(&self) -> Option<u64> {
        self.highest
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use rtc::shared::marshal::Marshal;
    use rtc::srtp::context::Context;
    use rtc::srtp::protection_profile::ProtectionProfile;

    /// An RTP packet in the clear: a 12-byte header, then `payload` (shared with the
    /// receiver's tests).
    pub(in crate::srtp) fn packet(ssrc: u32, seq: u16, payload: &[u8]) -> Vec<u8> {
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
