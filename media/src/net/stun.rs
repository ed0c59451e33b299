//! Just enough STUN parsing to route a binding request to its connection (RFC 8489 §5, §14.3).

const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
const HEADER_LEN: usize = 20;
const ATTR_USERNAME: u16 = 0x0006;

/// Whether the datagram looks like STUN (RFC 7983 demultiplexing plus the magic cookie).
#[inline]
pub fn is_stun(p: &[u8]) -> bool {
    p.len() >= HEADER_LEN && p[0] < 4 && p[4..8] == MAGIC_COOKIE
}

/// The local (our) ufrag of a STUN request: the USERNAME attribute is `ours:theirs`.
pub fn local_ufrag(p: &[u8]) -> Option<&str> {
    if !is_stun(p) {
        return None;
    }
    let body_len = u16::from_be_bytes([p[2], p[3]]) as usize;
    let end = (HEADER_LEN + body_len).min(p.len());
    let mut i = HEADER_LEN;
    while i + 4 <= end {
        let typ = u16::from_be_bytes([p[i], p[i + 1]]);
        let len = u16::from_be_bytes([p[i + 2], p[i + 3]]) as usize;
        let value = p.get(i + 4..i + 4 + len)?;
        if typ == ATTR_USERNAME {
            let user = std::str::from_utf8(value).ok()?;
            return user.split(':').next().filter(|s| !s.is_empty());
        }
        i += 4 + len.div_ceil(4) * 4;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(attrs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (t, v) in attrs {
            body.extend_from_slice(&t.to_be_bytes());
            body.extend_from_slice(&(v.len() as u16).to_be_bytes());
            body.extend_from_slice(v);
            body.resize(body.len().div_ceil(4) * 4, 0);
        }
        let mut p = vec![0x00, 0x01];
        p.extend_from_slice(&(body.len() as u16).to_be_bytes());
        p.extend_from_slice(&MAGIC_COOKIE);
        p.extend_from_slice(&[7; 12]);
        p.extend_from_slice(&body);
        p
    }

    #[test]
    fn finds_username_after_other_attributes() {
        let p = request(&[(0x8022, b"soft"), (ATTR_USERNAME, b"sfuFrag:cli")]);
        assert!(is_stun(&p));
        assert_eq!(local_ufrag(&p), Some("sfuFrag"));
    }

    #[test]
    fn rejects_non_stun_and_truncated() {
        assert_eq!(local_ufrag(&[0x80; 40]), None);
        let mut p = request(&[(ATTR_USERNAME, b"abc:def")]);
        p.truncate(26);
        assert_eq!(local_ufrag(&p), None);
        assert_eq!(local_ufrag(&request(&[])), None);
        assert_eq!(local_ufrag(&request(&[(ATTR_USERNAME, b":x")])), None);
    }
}
