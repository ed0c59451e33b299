//! What a subscribe connection negotiated for each downtrack: the payload types of its codec
//! (and of RTX), and the transport-wide-cc header extension id.

use crate::participant::Participant;

/// Learns the payload type the subscriber negotiated for each downtrack's codec, and the
/// connection's transport-wide-cc extension id.
pub(super) fn resolve_payload_types(p: &mut Participant) {
    let Some(peer) = p.subscribe.as_mut() else {
        return;
    };
    for dt in &mut p.downtracks {
        resolve_payload_type(&mut peer.pc, dt);
    }
    let twcc_ext = p
        .downtracks
        .iter()
        .find_map(|dt| twcc_extension(&mut peer.pc, dt.sender_id));
    peer.twcc_ext = twcc_ext;
    if let Some(link) = peer.downlink.as_mut() {
        link.set_twcc_ext(twcc_ext);
    }
}

/// The transport-wide-cc header extension id negotiated for one sender.
pub(crate) fn twcc_extension(
    pc: &mut rtc::peer_connection::RTCPeerConnection,
    sender: rtc::rtp_transceiver::RTCRtpSenderId,
) -> Option<u8> {
    let mut sender = pc.rtp_sender(sender)?;
    sender
        .get_parameters()
        .rtp_parameters
        .header_extensions
        .iter()
        .find(|h| h.uri == rtc::sdp::extmap::TRANSPORT_CC_URI)
        .map(|h| h.id as u8)
}

/// Learns the payload type negotiated for one downtrack's codec.
pub(crate) fn resolve_payload_type(
    pc: &mut rtc::peer_connection::RTCPeerConnection,
    dt: &mut crate::downtrack::DownTrack,
) {
    let Some(mut sender) = pc.rtp_sender(dt.sender_id) else {
        return;
    };
    let codecs = &sender.get_parameters().rtp_parameters.codecs;
    let same_mime = |c: &&rtc::rtp_transceiver::rtp_sender::RTCRtpCodecParameters| {
        c.rtp_codec.mime_type.eq_ignore_ascii_case(&dt.mime)
    };
    // The publisher's exact format first: an H.264 stream must not be labelled with the payload
    // type of another profile or packetization mode.
    dt.payload_type = codecs
        .iter()
        .filter(same_mime)
        .find(|c| c.rtp_codec.sdp_fmtp_line == dt.fmtp)
        .or_else(|| codecs.iter().find(same_mime))
        .map(|c| c.payload_type);
    let apt = dt.payload_type.map(|pt| format!("apt={pt}"));
    dt.rtx_payload_type = codecs
        .iter()
        .find(|c| {
            c.rtp_codec.mime_type.eq_ignore_ascii_case("video/rtx")
                && apt.as_deref().is_some_and(|apt| {
                    c.rtp_codec
                        .sdp_fmtp_line
                        .split(';')
                        .any(|p| p.trim() == apt)
                })
        })
        .map(|c| c.payload_type);
}
