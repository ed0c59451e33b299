//! Codec identification and keyframe detection from RTP payloads.
//!
//! The SFU never decodes media; it only needs to know where a decodable picture starts, so a
//! subscriber (new, or switching layers) starts on a keyframe instead of showing garbage.

/// The codecs the SFU forwards, as far as forwarding policy cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// Opus audio (48 kHz).
    Opus,
    /// VP8 video (RFC 7741 payload).
    Vp8,
    /// VP9 video (RFC 9628 payload).
    Vp9,
    /// H.264 video (RFC 6184 payload).
    H264,
    /// Anything else: forwarded as is, never treated as a keyframe boundary.
    Other,
}

impl Codec {
    /// Maps an SDP mime type (`video/VP8`, case-insensitive) to a codec.
    pub fn from_mime(mime: &str) -> Self {
        let sub = mime.rsplit('/').next().unwrap_or(mime);
        if sub.eq_ignore_ascii_case("opus") {
            Codec::Opus
        } else if sub.eq_ignore_ascii_case("vp8") {
            Codec::Vp8
        } else if sub.eq_ignore_ascii_case("vp9") {
            Codec::Vp9
        } else if sub.eq_ignore_ascii_case("h264") {
            Codec::H264
        } else {
            Codec::Other
        }
    }

    /// Whether this is a video codec for which keyframes matter.
    pub fn is_video(self) -> bool {
        matches!(self, Codec::Vp8 | Codec::Vp9 | Codec::H264)
    }

    /// Whether `payload` (an RTP payload of this codec) starts a keyframe.
    ///
    /// Audio is always "a keyframe": every Opus packet is independently decodable.
    pub fn is_keyframe(self, payload: &[u8]) -> bool {
        match self {
            Codec::Opus => true,
            Codec::Vp8 => vp8_keyframe(payload),
            Codec::Vp9 => vp9_keyframe(payload),
            Codec::H264 => h264_keyframe(payload),
            Codec::Other => false,
        }
    }
}

/// RFC 7741 §4.2: skip the payload descriptor, then the VP8 frame tag's P bit is 0 on keyframes.
fn vp8_keyframe(p: &[u8]) -> bool {
    let Some(&b0) = p.first() else { return false };
    let start_of_partition = b0 & 0x10 != 0;
    let partition_id = b0 & 0x07;
    if !start_of_partition || partition_id != 0 {
        return false;
    }
    let mut i = 1;
    if b0 & 0x80 != 0 {
        let Some(&x) = p.get(i) else { return false };
        i += 1;
        if x & 0x80 != 0 {
            // PictureID: 15 bits when its M bit is set, else 7.
            let Some(&pid) = p.get(i) else { return false };
            i += if pid & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            i += 1; // TL0PICIDX
        }
        if x & 0x30 != 0 {
            i += 1; // TID/Y/KEYIDX
        }
    }
    matches!(p.get(i), Some(&tag) if tag & 0x01 == 0)
}

/// RFC 9628 §4.2: a frame start (B) that is not inter-predicted (P = 0).
fn vp9_keyframe(p: &[u8]) -> bool {
    let Some(&b0) = p.first() else { return false };
    let inter_predicted = b0 & 0x40 != 0;
    let begins_frame = b0 & 0x08 != 0;
    begins_frame && !inter_predicted
}

/// RFC 6184: an IDR slice or SPS, alone, in a STAP-A, or at the start of an FU-A.
fn h264_keyframe(p: &[u8]) -> bool {
    let Some(&b0) = p.first() else { return false };
    match b0 & 0x1f {
        5 | 7 => true,
        24 => {
            let mut i = 1;
            while i + 2 < p.len() {
                let size = u16::from_be_bytes([p[i], p[i + 1]]) as usize;
                let t = p[i + 2] & 0x1f;
                if t == 5 || t == 7 {
                    return true;
                }
                i += 2 + size;
            }
            false
        }
        28 => match p.get(1) {
            Some(&fu) => fu & 0x80 != 0 && matches!(fu & 0x1f, 5 | 7),
            None => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mime_mapping() {
        assert_eq!(Codec::from_mime("video/VP8"), Codec::Vp8);
        assert_eq!(Codec::from_mime("video/h264"), Codec::H264);
        assert_eq!(Codec::from_mime("audio/opus"), Codec::Opus);
        assert_eq!(Codec::from_mime("video/VP9"), Codec::Vp9);
        assert_eq!(Codec::from_mime("video/AV1"), Codec::Other);
        assert!(!Codec::Opus.is_video());
    }

    #[test]
    fn vp8_keyframe_and_delta() {
        // Minimal descriptor (S=1, PID=0), frame tag P=0.
        assert!(Codec::Vp8.is_keyframe(&[0x10, 0x00, 0x9d]));
        // Same with P=1: a delta frame.
        assert!(!Codec::Vp8.is_keyframe(&[0x10, 0x01]));
        // Continuation packet (S=0) is never a keyframe start.
        assert!(!Codec::Vp8.is_keyframe(&[0x00, 0x00]));
        // Extended descriptor: X, I with 15-bit picture id, L, T.
        assert!(Codec::Vp8.is_keyframe(&[0x90, 0xe0, 0x81, 0x23, 0x05, 0x40, 0x00]));
        assert!(!Codec::Vp8.is_keyframe(&[0x90, 0xe0, 0x81, 0x23, 0x05, 0x40, 0x01]));
        assert!(!Codec::Vp8.is_keyframe(&[0x90, 0xe0]));
        assert!(!Codec::Vp8.is_keyframe(&[]));
    }

    #[test]
    fn vp9_and_h264() {
        assert!(Codec::Vp9.is_keyframe(&[0x08]));
        assert!(!Codec::Vp9.is_keyframe(&[0x48]));
        assert!(Codec::H264.is_keyframe(&[0x65]));
        assert!(Codec::H264.is_keyframe(&[0x67]));
        assert!(!Codec::H264.is_keyframe(&[0x41]));
        // STAP-A holding an SPS.
        assert!(Codec::H264.is_keyframe(&[0x78, 0x00, 0x02, 0x67, 0x42]));
        // FU-A start of an IDR, and a middle fragment of one.
        assert!(Codec::H264.is_keyframe(&[0x7c, 0x85]));
        assert!(!Codec::H264.is_keyframe(&[0x7c, 0x05]));
    }
}
