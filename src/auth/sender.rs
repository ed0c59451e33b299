//! OTP delivery. `log` writes the code to the server log (development, or an operator relaying codes by
//! hand); `webhook` POSTs it, HMAC-signed, to the operator's SMS gateway.

use std::time::Duration;

use crate::config::OtpSenderConfig;

/// Delivers one-time passwords.
#[derive(Debug, Clone)]
pub enum OtpSender {
    /// Log line `otp phone=... code=...` at INFO.
    Log,
    /// Signed POST to a URL.
    Webhook {
        /// HTTP client with a timeout.
        client: reqwest::Client,
        /// Target URL.
        url: url::Url,
        /// HMAC-SHA256 key.
        secret: String,
    },
}

/// Why a code could not be delivered (the reason is logged; the client sees only that it failed).
#[derive(Debug, thiserror::Error)]
#[error("otp delivery failed: {0}")]
pub struct SendError(pub String);

impl OtpSender {
    /// Builds the configured sender.
    pub fn from_config(config: &OtpSenderConfig) -> Result<OtpSender, SendError> {
        Ok(match config {
            OtpSenderConfig::Log => OtpSender::Log,
            OtpSenderConfig::Webhook { url, secret } => OtpSender::Webhook {
                client: reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .map_err(|e| SendError(e.to_string()))?,
                url: url.clone(),
                secret: secret.clone(),
            },
        })
    }

    /// Sends `code` to `phone`.
    pub async fn send(&self, phone: &str, code: &str, expires_in: u64) -> Result<(), SendError> {
        match self {
            OtpSender::Log => {
                tracing::info!("otp phone={phone} code={code}");
                Ok(())
            }
            OtpSender::Webhook {
                client,
                url,
                secret,
            } => {
                let body = serde_json::to_vec(&serde_json::json!({
                    "phone": phone, "code": code, "expires_in": expires_in,
                }))
                .map_err(|e| SendError(e.to_string()))?;
                let response = client
                    .post(url.clone())
                    .header("Content-Type", "application/json")
                    .header("X-Mescon-Signature", signature(secret.as_bytes(), &body))
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| SendError(format!("webhook request: {e}")))?;
                if response.status().is_success() {
                    Ok(())
                } else {
                    Err(SendError(format!("webhook answered {}", response.status())))
                }
            }
        }
    }
}

/// `sha256=<hex HMAC-SHA256(secret, body)>`, the value of `X-Mescon-Signature`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(crate::crypto::hmac_sha256(secret, body))
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn signature_matches_a_known_vector() {
        // RFC 4231 test case 2.
        assert_eq!(
            super::signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
