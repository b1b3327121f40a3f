//! One HTTP exchange with Daraja and how its failures are told apart.

use std::time::Duration;

use serde::de::DeserializeOwned;
use url::Url;

use crate::endpoint::Api;
use crate::error::DarajaError;
use crate::redact::{REDACTED, mask_long_digit_runs};
use crate::wire::ErrorEnvelope;

/// Answers larger than this are not Daraja's (its bodies are a few hundred bytes).
const MAX_BODY_BYTES: usize = 1 << 20;
/// How much of an unexpected body an error keeps.
const EXCERPT_CHARS: usize = 200;

/// A status and a whole body.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: Vec<u8>,
}

#[derive(Debug)]
pub(crate) struct Transport {
    pub(crate) http: reqwest::Client,
    base_url: Url,
    request_timeout: Duration,
}

impl Transport {
    pub(crate) fn new(
        base_url: Url,
        connect_timeout: Duration,
        request_timeout: Duration,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .timeout(request_timeout)
            // A redirected POST turns into a GET elsewhere; Daraja never redirects.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("mpesa-gateway-daraja/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Transport {
            http,
            base_url,
            request_timeout,
        })
    }

    pub(crate) fn base_url(&self) -> &Url {
        &self.base_url
    }

    /// The base URL (which may carry a path prefix, e.g. a simulator under `/daraja`) followed
    /// by an endpoint path.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url.as_str().trim_end_matches('/'), path)
    }

    /// Sends a request and reads the whole answer.
    pub(crate) async fn send(
        &self,
        api: Api,
        request: reqwest::RequestBuilder,
    ) -> Result<Answer, DarajaError> {
        let mut response = request.send().await.map_err(|e| self.classify(api, &e))?;
        let status = response.status().as_u16();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.classify(api, &e))? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(DarajaError::Malformed {
                    api,
                    status,
                    reason: "the answer is larger than 1 MiB".into(),
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Answer { status, body })
    }

    /// Connect failures happened before anything was sent; everything else may have reached
    /// Daraja.
    fn classify(&self, api: Api, e: &reqwest::Error) -> DarajaError {
        let reason = describe(e);
        if e.is_connect() || e.is_builder() {
            DarajaError::NotSent { api, reason }
        } else if e.is_timeout() {
            DarajaError::Timeout {
                api,
                after: self.request_timeout,
            }
        } else {
            DarajaError::Transport { api, reason }
        }
    }
}

fn describe(e: &reqwest::Error) -> String {
    crate::error::error_chain(e)
}

/// Reads Daraja's answer: the expected JSON on 2xx, otherwise its error envelope. `secret` (the
/// bearer token) is blanked out of anything kept, since `401.002.01` quotes the token.
pub(crate) fn decode<T: DeserializeOwned>(
    api: Api,
    answer: &Answer,
    secret: Option<&str>,
) -> Result<T, DarajaError> {
    let clean = |text: &str| {
        let text = match secret {
            Some(s) if !s.is_empty() => text.replace(s, REDACTED),
            _ => text.to_owned(),
        };
        mask_long_digit_runs(&text)
    };
    let refused = |envelope: ErrorEnvelope| DarajaError::Refused {
        api,
        status: answer.status,
        request_id: envelope.request_id,
        error_code: envelope.error_code.0.trim().to_owned(),
        error_message: clean(&envelope.error_message),
    };
    let envelope = || {
        serde_json::from_slice::<ErrorEnvelope>(&answer.body)
            .ok()
            .filter(|e| !e.error_code.0.trim().is_empty())
    };
    if (200..300).contains(&answer.status) {
        return match serde_json::from_slice::<T>(&answer.body) {
            Ok(value) => Ok(value),
            Err(e) => match envelope() {
                Some(env) => Err(refused(env)),
                None => Err(DarajaError::Malformed {
                    api,
                    status: answer.status,
                    reason: clean(&e.to_string()),
                }),
            },
        };
    }
    match envelope() {
        Some(env) => Err(refused(env)),
        None => Err(DarajaError::UnexpectedStatus {
            api,
            status: answer.status,
            body_excerpt: clean(
                &String::from_utf8_lossy(&answer.body)
                    .chars()
                    .take(EXCERPT_CHARS)
                    .collect::<String>(),
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::TokenResponse;

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status,
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn tells_answers_apart() {
        let ok: Result<TokenResponse, _> = decode(
            Api::OAuth,
            &answer(200, r#"{"access_token":"t","expires_in":"3599"}"#),
            None,
        );
        assert!(ok.is_ok());
        let html: Result<TokenResponse, _> =
            decode(Api::OAuth, &answer(200, "<html>portal</html>"), None);
        assert!(matches!(
            html,
            Err(DarajaError::Malformed { status: 200, .. })
        ));
        let refused: Result<TokenResponse, _> = decode(
            Api::StkPush,
            &answer(
                401,
                r#"{"requestId":"r","errorCode":"401.002.01","errorMessage":"Error Occurred - Invalid Access Token - SeCrEtToKeN"}"#,
            ),
            Some("SeCrEtToKeN"),
        );
        let err = refused.unwrap_err();
        assert!(err.is_invalid_token());
        assert!(!err.to_string().contains("SeCrEtToKeN"), "{err}");
        let empty: Result<TokenResponse, _> = decode(Api::StkPush, &answer(503, ""), None);
        assert!(matches!(
            empty,
            Err(DarajaError::UnexpectedStatus { status: 503, .. })
        ));
        let fault: Result<TokenResponse, _> = decode(
            Api::C2bRegisterUrl,
            &answer(
                500,
                r#"{"Envelope":{"Body":{"Fault":{"faultstring":"x"}}}}"#,
            ),
            None,
        );
        assert!(matches!(
            fault,
            Err(DarajaError::UnexpectedStatus { status: 500, .. })
        ));
    }
}
