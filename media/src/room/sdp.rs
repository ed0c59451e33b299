//! What a publisher's offer says about its tracks, read from the SDP text.

/// The msid track ids of the media sections a publisher's offer still sends: the port is not 0
/// and the direction is `sendrecv` (the default) or `sendonly`. `rtc` 0.21 reports no event when
/// a renegotiation stops a remote track, so the room compares its tracks against this.
pub(crate) fn sent_track_ids(sdp: &str) -> Vec<&str> {
    let mut ids = Vec::new();
    for section in sdp.split("\nm=").skip(1) {
        let mut lines = section.lines().map(str::trim_end);
        let port = lines
            .next()
            .and_then(|m| m.split_whitespace().nth(1))
            .unwrap_or("0");
        if port == "0" {
            continue;
        }
        let mut sends = true;
        let mut track = None;
        for line in lines {
            match line {
                "a=recvonly" | "a=inactive" => sends = false,
                _ => {
                    if let Some(msid) = line.strip_prefix("a=msid:") {
                        track = msid.split_whitespace().nth(1).or(track);
                    } else if let Some(rest) = line.strip_prefix("a=ssrc:")
                        && let Some(msid) = rest.split_once(" msid:").map(|(_, m)| m)
                    {
                        track = track.or(msid.split_whitespace().nth(1));
                    }
                }
            }
        }
        if let Some(track) = track.filter(|_| sends) {
            ids.push(track);
        }
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(sections: &[&str]) -> String {
        let mut s = String::from("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n");
        for m in sections {
            s.push_str(m);
        }
        s
    }

    #[test]
    fn tracks_still_sent_are_listed_and_stopped_ones_are_not() {
        let sdp = offer(&[
            "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=sendrecv\r\na=msid:s mic\r\n",
            "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=sendonly\r\na=msid:s cam\r\n",
            // Removed with removeTrack: the section stays, receive-only, without its msid.
            "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:2\r\na=recvonly\r\n",
            // Paused, msid kept: not sent.
            "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:3\r\na=inactive\r\na=msid:s screen\r\n",
            // Stopped transceiver: port 0.
            "m=audio 0 UDP/TLS/RTP/SAVPF 111\r\na=mid:4\r\na=msid:s old\r\n",
            // No direction attribute: sendrecv; msid only in the older ssrc form.
            "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:5\r\na=ssrc:42 msid:s legacy\r\n",
        ]);
        assert_eq!(sent_track_ids(&sdp), ["mic", "cam", "legacy"]);
    }

    #[test]
    fn nothing_from_text_that_is_not_sdp() {
        assert!(sent_track_ids("").is_empty());
        assert!(sent_track_ids("garbage\nm=").is_empty());
    }
}
