//! [`SrtpReceiver`]: both SRTP profiles' unprotection of RTP, in place, for one connection.

use super::session::{Cipher, Session, cm_iv, gcm_iv};
use super::{MasterKeys, Profile, Roc};
use crate::error::{Error, Result};

/// Streams one receiver keeps state for: a publisher sends a few (audio, up to three simulcast
/// layers per video track); more is not a browser, and those packets go the slow way.
const MAX_STREAMS: usize = 16;
/// Packets behind the newest that may still arrive (reordering); older ones are refused as
/// possible replays (RFC 3711 §3.3.2 asks for at least 64).
const WINDOW: u64 = 128;

/// One incoming stream's rollover counter and replay window.
#[derive(Debug, Default, Clone, Copy)]
struct Stream {
    roc: Roc,
    /// Bit `i`: the packet `i` indices behind the newest has been accepted.
    seen: u128,
}

/// Decrypts and authenticates RTP packets for one connection (all its SSRCs) in place.
pub struct SrtpReceiver {
    session: Session,
    streams: Vec<(u32, Stream)>,
}

impl SrtpReceiver {
    /// Derives the session keys from the remote side's master keys.
    pub fn new(keys: &MasterKeys) -> Result<Self> {
        Ok(Self {
            session: Session::new(keys)?,
            streams: Vec::new(),
        })
    }

    /// The profile in use.
    pub fn profile(&self) -> Profile {
        self.session.profile
    }

    /// Whether a stream with this SSRC has state here.
    pub fn knows(&self, ssrc: u32) -> bool {
        self.streams.iter().any(|(s, _)| *s == ssrc)
    }

    /// Starts a stream where another receiver began it: `seq` is the first packet that receiver
    /// accepted, with a rollover counter of 0 as RFC 3711 has for a stream's first packet.
    /// Later packets are then placed exactly as that receiver would have placed them.
    pub fn seed(&mut self, ssrc: u32, seq: u16) {
        if self.knows(ssrc) || self.streams.len() >= MAX_STREAMS {
            return;
        }
        let mut stream = Stream::default();
        stream.roc.accept(seq as u64);
        stream.seen = 1;
        self.streams.push((ssrc, stream));
    }

    /// Turns the SRTP packet in `buf` (an RTP header of `header_len` bytes, the encrypted
    /// payload, the tag) into RTP in place and returns its length without the tag. Refuses a
    /// packet that does not authenticate, one already accepted, and one too old to tell; none
    /// of those changes any state.
    pub fn unprotect(&mut self, buf: &mut [u8], header_len: usize) -> Result<usize> {
        let tag_len = self.session.profile.tag_len();
        if buf.len() < header_len + tag_len || header_len < 12 {
            return Err(Error::Srtp("short packet"));
        }
        let seq = u16::from_be_bytes([buf[2], buf[3]]);
        let ssrc = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
        let slot = match self.streams.iter().position(|(s, _)| *s == ssrc) {
            Some(i) => i,
            None if self.streams.len() < MAX_STREAMS => {
                self.streams.push((ssrc, Stream::default()));
                self.streams.len() - 1
            }
            None => return Err(Error::Srtp("too many streams")),
        };
        let stream = self.streams[slot].1;
        let index = stream.roc.index(seq);
        let behind = stream.roc.highest().map_or(0, |h| h.saturating_sub(index));
        if stream.roc.highest().is_some_and(|h| index <= h)
            && (behind >= WINDOW || stream.seen & (1u128 << behind) != 0)
        {
            return Err(Error::Srtp("replayed or too old"));
        }
        let roc = (index >> 16) as u32;
        let len = buf.len() - tag_len;
        match &mut self.session.cipher {
            Cipher::Gcm(aead) => {
                let iv = gcm_iv(&self.session.salt, ssrc, roc, seq);
                let (packet, tag) = buf.split_at_mut(len);
                let (aad, payload) = packet.split_at_mut(header_len);
                aead.open_in_place(&iv, aad, payload, tag)
                    .map_err(|_| Error::Srtp("not authentic"))?;
            }
            Cipher::CmSha1 { ctr, mac } => {
                let mut expected = [0u8; 20];
                mac.sign(&[&buf[..len], &roc.to_be_bytes()], &mut expected)
                    .map_err(|_| Error::Srtp("authenticate"))?;
                // Constant time: how much of a forged tag matched must not show.
                let diff = expected[..tag_len]
                    .iter()
                    .zip(&buf[len..])
                    .fold(0u8, |d, (a, b)| d | (a ^ b));
                if diff != 0 {
                    return Err(Error::Srtp("not authentic"));
                }
                let iv = cm_iv(&self.session.salt, ssrc, roc, seq);
                ctr.apply_keystream(&iv, &mut buf[header_len..len])
                    .map_err(|_| Error::Srtp("decrypt"))?;
            }
        }
        let stream = &mut self.streams[slot].1;
        match stream.roc.highest() {
            Some(h) if index <= h => stream.seen |= 1u128 << (h - index),
            Some(h) => {
                let ahead = index - h;
                stream.seen = if ahead >= WINDOW {
                    0
                } else {
                    stream.seen << ahead
                } | 1;
            }
            None => stream.seen = 1,
        }
        stream.roc.accept(index);
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::srtp::SrtpSender;
    use rtc::srtp::context::Context;
    use rtc::srtp::protection_profile::ProtectionProfile;

    fn plain(ssrc: u32, seq: u16) -> Vec<u8> {
        crate::srtp::sender::tests::packet(ssrc, seq, &[seq as u8; 200])
    }

    fn keys(profile: Profile) -> MasterKeys {
        let salt: Vec<u8> = (10..10 + profile.salt_len() as u8).collect();
        MasterKeys::new(profile, [0x42; 16], &salt).expect("keys")
    }

    fn rtc_profile(profile: Profile) -> ProtectionProfile {
        match profile {
            Profile::AeadAes128Gcm => ProtectionProfile::AeadAes128Gcm,
            Profile::Aes128CmHmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
        }
    }

    /// What `rtc` encrypts, in an order with a wrap, reordering and a late packet, we decrypt
    /// to the same bytes.
    fn decrypts_rtc(profile: Profile) {
        let k = keys(profile);
        let provider = rtc::crypto::default_provider().expect("provider");
        let mut theirs = Context::new(
            k.key(),
            k.salt(),
            rtc_profile(profile),
            None,
            None,
            provider.crypto(),
        )
        .expect("context");
        let mut ours = SrtpReceiver::new(&k).expect("receiver");
        let order = [
            65530u16, 65531, 65533, 65532, 65535, 0, 65534, 1, 3, 2, 4, 400,
        ];
        for seq in order {
            let p = plain(0xabc, seq);
            let mut buf = theirs.encrypt_rtp(&p).expect("rtc encrypts").to_vec();
            let len = ours.unprotect(&mut buf, 12).expect("we decrypt");
            assert_eq!(&buf[..len], &p[..], "seq {seq}");
        }
    }

    #[test]
    fn gcm_decrypts_what_rtc_encrypts() {
        decrypts_rtc(Profile::AeadAes128Gcm);
    }

    #[test]
    fn cm_sha1_decrypts_what_rtc_encrypts() {
        decrypts_rtc(Profile::Aes128CmHmacSha1_80);
    }

    fn refuses_replays_old_and_forged(profile: Profile) {
        let k = keys(profile);
        let mut tx = SrtpSender::new(&k).expect("sender");
        let mut rx = SrtpReceiver::new(&k).expect("receiver");
        let mut roc = Roc::default();
        let mut sent = Vec::new();
        for seq in 1000..1300u16 {
            let mut buf = plain(7, seq);
            tx.protect(&mut buf, 12, 7, seq, roc.next(seq))
                .expect("protect");
            sent.push(buf);
        }
        let mut open = |buf: &[u8]| {
            let mut b = buf.to_vec();
            rx.unprotect(&mut b, 12)
        };
        assert!(open(&sent[0]).is_ok());
        assert!(open(&sent[0]).is_err(), "a replay");
        // A forgery far ahead must not move the window: it would make every real packet "old".
        let mut forged = sent[299].clone();
        let last = forged.len() - 1;
        forged[last] ^= 1;
        forged[2..4].copy_from_slice(&40_000u16.to_be_bytes());
        assert!(open(&forged).is_err(), "a forgery");
        assert!(open(&sent[200]).is_ok());
        assert!(open(&sent[150]).is_ok(), "50 behind: inside the window");
        assert!(open(&sent[150]).is_err(), "and only once");
        assert!(open(&sent[60]).is_err(), "140 behind: too old to tell");
        assert!(open(&sent[201]).is_ok());
        let mut short = sent[202][..20].to_vec();
        assert!(rx.unprotect(&mut short, 12).is_err());
    }

    #[test]
    fn gcm_refuses_replays_old_and_forged_packets() {
        refuses_replays_old_and_forged(Profile::AeadAes128Gcm);
    }

    #[test]
    fn cm_sha1_refuses_replays_old_and_forged_packets() {
        refuses_replays_old_and_forged(Profile::Aes128CmHmacSha1_80);
    }

    #[test]
    fn a_seeded_stream_continues_across_a_wrap_the_seed_precedes() {
        let k = keys(Profile::AeadAes128Gcm);
        let mut tx = SrtpSender::new(&k).expect("sender");
        let mut roc = Roc::default();
        let mut rx = SrtpReceiver::new(&k).expect("receiver");
        // Another receiver took 65535 (index 65535, ROC 0); ours continues with 0 (ROC 1).
        let mut first = plain(9, 65535);
        tx.protect(&mut first, 12, 9, 65535, roc.next(65535))
            .expect("protect");
        rx.seed(9, 65535);
        assert!(rx.knows(9));
        let mut next = plain(9, 0);
        tx.protect(&mut next, 12, 9, 0, roc.next(0))
            .expect("protect");
        let len = rx.unprotect(&mut next, 12).expect("ROC 1 guessed");
        assert_eq!(&next[..len], &plain(9, 0)[..]);
        assert!(
            rx.unprotect(&mut first, 12).is_err(),
            "the seed counts as seen"
        );
    }
}
