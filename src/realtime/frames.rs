//! The client → server frames of the WebSocket protocol, parsed strictly: every frame is a JSON object
//! with a `type`; anything else is answered with an `error` frame naming what was wrong.

use std::collections::HashMap;

use serde::Deserialize;

/// A frame a client may send after authenticating.
#[derive(Debug, Deserialize)]
#[serde(tag = "type")]
pub enum ClientFrame {
    /// Send a message.
    #[serde(rename = "message.send")]
    MessageSend {
        /// Recipient user id.
        to: String,
        /// Idempotency key, unique per sender.
        client_id: String,
        /// Text, 1–4096 characters.
        body: String,
    },
    /// Mark a peer's messages read up to a seq.
    #[serde(rename = "message.read")]
    MessageRead {
        /// The peer's user id.
        peer: String,
        /// Highest seq read.
        up_to_seq: i64,
    },
    /// Typing indicator.
    #[serde(rename = "typing")]
    Typing {
        /// The peer's user id.
        to: String,
        /// Typing or stopped.
        active: bool,
    },
    /// Replay what this device missed.
    #[serde(rename = "sync")]
    Sync {
        /// Highest seq the device has, per conversation id.
        #[serde(default)]
        after: HashMap<String, i64>,
    },
    /// Application-level keepalive; answered with `pong`.
    #[serde(rename = "ping")]
    Ping,
    /// Start a call.
    #[serde(rename = "call.invite")]
    CallInvite {
        /// The callee's user id.
        to: String,
        /// `audio` or `video`.
        kind: String,
    },
    /// Accept a ringing call.
    #[serde(rename = "call.accept")]
    CallAccept {
        /// The call.
        call_id: String,
    },
    /// Decline a ringing call.
    #[serde(rename = "call.decline")]
    CallDecline {
        /// The call.
        call_id: String,
    },
    /// Hang up (or cancel while ringing).
    #[serde(rename = "call.hangup")]
    CallHangup {
        /// The call.
        call_id: String,
    },
    /// Signalling with the SFU for a call; the inner shape is documented in the README.
    #[serde(rename = "sfu.signal")]
    SfuSignal {
        /// The call.
        call_id: String,
        /// Everything else of the frame.
        #[serde(flatten)]
        payload: serde_json::Map<String, serde_json::Value>,
    },
}

/// Why a frame was refused, as `(code, message)` for the `error` frame.
pub fn parse(text: &str) -> Result<ClientFrame, (&'static str, String)> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|_| ("invalid_input", "frame is not valid JSON".to_string()))?;
    let Some(kind) = value.get("type").and_then(|t| t.as_str()) else {
        return Err((
            "invalid_input",
            "frame must be a JSON object with a string `type`".into(),
        ));
    };
    const KNOWN: &[&str] = &[
        "message.send",
        "message.read",
        "typing",
        "sync",
        "ping",
        "call.invite",
        "call.accept",
        "call.decline",
        "call.hangup",
        "sfu.signal",
    ];
    if !KNOWN.contains(&kind) {
        let kind = kind.chars().take(40).collect::<String>();
        return Err(("unknown_type", format!("unknown frame type `{kind}`")));
    }
    serde_json::from_value(value).map_err(|e| ("invalid_input", e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_parse_and_errors_are_specific() {
        assert!(matches!(parse(r#"{"type":"ping"}"#), Ok(ClientFrame::Ping)));
        assert!(matches!(
            parse(r#"{"type":"message.send","to":"u","client_id":"c","body":"hi"}"#),
            Ok(ClientFrame::MessageSend { .. })
        ));
        assert!(
            matches!(parse(r#"{"type":"sync"}"#), Ok(ClientFrame::Sync { after }) if after.is_empty())
        );
        assert_eq!(parse("nope").map(|_| ()).unwrap_err().0, "invalid_input");
        assert_eq!(parse("[1]").map(|_| ()).unwrap_err().0, "invalid_input");
        assert_eq!(
            parse(r#"{"type":"launch.missiles"}"#)
                .map(|_| ())
                .unwrap_err()
                .0,
            "unknown_type"
        );
        assert_eq!(
            parse(r#"{"type":"message.send","to":"u"}"#)
                .map(|_| ())
                .unwrap_err()
                .0,
            "invalid_input"
        );
        assert_eq!(
            parse(r#"{"type":"typing","to":"u","active":"yes"}"#)
                .map(|_| ())
                .unwrap_err()
                .0,
            "invalid_input"
        );
        assert!(matches!(
            parse(r#"{"type":"sfu.signal","call_id":"c","pc":"publish","sdp":{"type":"offer","sdp":"v=0"}}"#),
            Ok(ClientFrame::SfuSignal { payload, .. }) if payload.contains_key("sdp")
        ));
    }
}
