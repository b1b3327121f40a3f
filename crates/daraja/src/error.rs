//! What can go wrong, each kind its own type:
//! * [`ConfigError`]: the configuration cannot work (found by `DarajaClient::new`);
//! * [`InvalidRequest`]: a request was refused before anything was sent;
//! * [`DarajaError`]: a call failed, keeping what Daraja said and whether it may have been
//!   processed;
//! * [`CallbackParseError`]: a body Safaricom POSTed cannot be trusted.

use std::time::Duration;

use mpesa_domain::{AmountError, PhoneError, TextError};

use crate::endpoint::Api;
use crate::redact::mask_long_digit_runs;
use crate::security::SecurityError;
use crate::validate::UrlProblem;

/// The configuration cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} must not be empty")]
    Empty(&'static str),
    #[error("{field} must be 5 to 7 digits")]
    InvalidShortCode { field: &'static str },
    #[error("CustomerBuyGoodsOnline needs the till number as PartyB")]
    TillRequired,
    #[error("for CustomerPayBillOnline PartyB must be the shortcode itself")]
    PartyBNotShortCode,
    #[error("the Daraja base URL must be an http or https URL with a host")]
    BaseUrl,
    #[error("{0} must be greater than zero")]
    ZeroDuration(&'static str),
    #[error(
        "amount bounds: the minimum ({min}) must be at least 1 and not above the maximum ({max})"
    )]
    AmountBounds { min: i64, max: i64 },
    #[error("the initiator name and password must be set together")]
    InitiatorIncomplete,
    #[error("the public sandbox {0} cannot work in production")]
    SandboxValueInProduction(&'static str),
    #[error("encryption certificate: {0}")]
    Certificate(#[from] SecurityError),
    #[error("could not build the HTTP client: {0}")]
    HttpClient(String),
}

/// A request refused before anything was sent. Each names the Daraja field it is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRequest {
    #[error("PhoneNumber: {0}")]
    Phone(#[from] PhoneError),
    #[error("Amount: {0}")]
    Amount(#[from] AmountError),
    #[error("AccountReference: {0}")]
    AccountReference(TextError),
    #[error("TransactionDesc: {0}")]
    TransactionDesc(TextError),
    #[error("{field}: {problem}")]
    Url {
        field: &'static str,
        problem: UrlProblem,
    },
    #[error("{field}: must be {min} to {max} characters")]
    Length {
        field: &'static str,
        min: usize,
        max: usize,
    },
    #[error("{field}: {reason}")]
    Format {
        field: &'static str,
        reason: &'static str,
    },
    #[error("{field} is required")]
    Missing { field: &'static str },
    #[error("{0} is not available in production")]
    NotInProduction(Api),
    #[error("the initiator name and password are not configured")]
    InitiatorNotConfigured,
}

impl InvalidRequest {
    /// The Daraja field the problem is about, for a `{"field": ...}` in an API error.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            InvalidRequest::Phone(_) => Some("PhoneNumber"),
            InvalidRequest::Amount(_) => Some("Amount"),
            InvalidRequest::AccountReference(_) => Some("AccountReference"),
            InvalidRequest::TransactionDesc(_) => Some("TransactionDesc"),
            InvalidRequest::Url { field, .. }
            | InvalidRequest::Length { field, .. }
            | InvalidRequest::Format { field, .. }
            | InvalidRequest::Missing { field } => Some(field),
            InvalidRequest::NotInProduction(_) | InvalidRequest::InitiatorNotConfigured => None,
        }
    }
}

/// A Daraja call that did not give the expected answer.
///
/// The variants separate what the gateway must treat differently: a refusal (Daraja answered
/// with its error envelope: nothing happened), an answer that cannot be read, a timeout, a broken
/// connection, and a connection that was never made ("not sent"). See
/// [`DarajaError::may_have_been_processed`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DarajaError {
    #[error("invalid request, not sent: {0}")]
    Invalid(#[from] InvalidRequest),
    /// Daraja answered with its error envelope (`requestId`, `errorCode`, `errorMessage`).
    #[error("Daraja refused the {api} request (HTTP {status}, {error_code}): {error_message}")]
    Refused {
        api: Api,
        status: u16,
        request_id: String,
        error_code: String,
        error_message: String,
    },
    /// A non-2xx answer without Daraja's envelope (empty, HTML, an Apigee fault object…).
    #[error("Daraja answered the {api} request with HTTP {status} and no error code")]
    UnexpectedStatus {
        api: Api,
        status: u16,
        body_excerpt: String,
    },
    /// A 2xx answer that is not the JSON expected (not JSON, or missing what matters).
    #[error("Daraja's answer to the {api} request (HTTP {status}) could not be read: {reason}")]
    Malformed {
        api: Api,
        status: u16,
        reason: String,
    },
    /// No complete answer in time, after the request was (or may have been) sent.
    #[error(
        "no answer from Daraja to the {api} request within {after:?}; it may have been processed"
    )]
    Timeout { api: Api, after: Duration },
    /// No connection could be made (DNS, refused, TLS handshake, connect timeout): the request
    /// was not sent.
    #[error("could not connect to Daraja for the {api} request; nothing was sent: {reason}")]
    NotSent { api: Api, reason: String },
    /// The connection failed after the request may have been sent.
    #[error(
        "the connection to Daraja failed during the {api} request; it may have been processed: {reason}"
    )]
    Transport { api: Api, reason: String },
    #[error("could not build the SecurityCredential: {0}")]
    Credential(#[from] SecurityError),
}

/// Error codes that mean "this access token is not accepted": drop it and retry once.
const INVALID_TOKEN_CODES: &[&str] = &["404.001.03", "401.002.01", "401.003.01"];

impl DarajaError {
    /// True when a POST may have reached Daraja and its outcome is unknown: a timeout or a broken
    /// connection after sending, a 5xx without Daraja's envelope, a 2xx whose body cannot be
    /// read. Such a request is never retried by this client; the gateway resolves it (STK Query,
    /// Transaction Status).
    pub fn may_have_been_processed(&self) -> bool {
        match self {
            DarajaError::Timeout { api, .. } | DarajaError::Transport { api, .. } => api.is_post(),
            DarajaError::UnexpectedStatus { api, status, .. } => api.is_post() && *status >= 500,
            DarajaError::Malformed { api, status, .. } => {
                api.is_post() && (200..300).contains(status)
            }
            DarajaError::Invalid(_)
            | DarajaError::Refused { .. }
            | DarajaError::NotSent { .. }
            | DarajaError::Credential(_) => false,
        }
    }

    /// True when nothing left this process (invalid request, credential, or no connection).
    pub fn is_not_sent(&self) -> bool {
        matches!(
            self,
            DarajaError::Invalid(_) | DarajaError::NotSent { .. } | DarajaError::Credential(_)
        )
    }

    /// The API the failing call was for (`Api::OAuth` when the token could not be had).
    pub fn api(&self) -> Option<Api> {
        match self {
            DarajaError::Refused { api, .. }
            | DarajaError::UnexpectedStatus { api, .. }
            | DarajaError::Malformed { api, .. }
            | DarajaError::Timeout { api, .. }
            | DarajaError::NotSent { api, .. }
            | DarajaError::Transport { api, .. } => Some(*api),
            DarajaError::Invalid(_) | DarajaError::Credential(_) => None,
        }
    }

    /// Daraja's `errorCode`, e.g. `400.002.02`, for a refusal.
    pub fn error_code(&self) -> Option<&str> {
        match self {
            DarajaError::Refused { error_code, .. } => Some(error_code),
            _ => None,
        }
    }

    /// Daraja's `errorMessage` for a refusal.
    pub fn error_message(&self) -> Option<&str> {
        match self {
            DarajaError::Refused { error_message, .. } => Some(error_message),
            _ => None,
        }
    }

    pub fn http_status(&self) -> Option<u16> {
        match self {
            DarajaError::Refused { status, .. }
            | DarajaError::UnexpectedStatus { status, .. }
            | DarajaError::Malformed { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Daraja rejected the access token (`404.001.03`, `401.002.01`, `401.003.01`, or
    /// `400.003.01` "Invalid Access Token"). It did not process the call.
    pub fn is_invalid_token(&self) -> bool {
        match self {
            DarajaError::Refused {
                error_code,
                error_message,
                ..
            } => {
                INVALID_TOKEN_CODES.contains(&error_code.as_str())
                    || (error_code == "400.003.01"
                        && error_message
                            .to_ascii_lowercase()
                            .contains("invalid access token"))
            }
            _ => false,
        }
    }

    /// Daraja's throttling answers (`500.003.02` spike arrest, `500.003.03` quota) or HTTP 429:
    /// back off before asking again.
    pub fn is_throttled(&self) -> bool {
        match self {
            DarajaError::Refused {
                error_code, status, ..
            } => error_code == "500.003.02" || error_code == "500.003.03" || *status == 429,
            DarajaError::UnexpectedStatus { status, .. } => *status == 429,
            _ => false,
        }
    }

    /// A short label for metrics: Daraja's error code for a refusal, else the kind of failure.
    pub fn outcome_label(&self) -> String {
        match self {
            DarajaError::Invalid(_) => "invalid_request".into(),
            DarajaError::Refused { error_code, .. } => metric_safe_code(error_code),
            DarajaError::UnexpectedStatus { status, .. } => format!("http_{status}"),
            DarajaError::Malformed { .. } => "malformed".into(),
            DarajaError::Timeout { .. } => "timeout".into(),
            DarajaError::NotSent { .. } => "not_sent".into(),
            DarajaError::Transport { .. } => "transport".into(),
            DarajaError::Credential(_) => "credential".into(),
        }
    }
}

/// Keeps metric labels few and tidy: only codes shaped like Daraja's (`500.001.1001`).
fn metric_safe_code(code: &str) -> String {
    let ok = !code.is_empty()
        && code.len() <= 16
        && code.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && code.split('.').all(|part| !part.is_empty());
    if ok {
        code.to_owned()
    } else {
        "other_error_code".into()
    }
}

/// A body Safaricom POSTed that cannot be trusted. Messages never quote a full phone number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackParseError {
    #[error("the body is not valid JSON: {0}")]
    NotJson(String),
    #[error("the body does not have the expected shape: {0}")]
    Shape(String),
    #[error("{0} is missing or empty")]
    Missing(&'static str),
    #[error("a successful STK callback (ResultCode 0) has no MpesaReceiptNumber")]
    MissingReceipt,
    #[error("MpesaReceiptNumber is not a receipt number (over 64 characters, or a NUL)")]
    InvalidReceipt,
    #[error("{field} is not an exact amount: {value}")]
    InvalidAmount { field: &'static str, value: String },
    #[error("AccountBalance cannot be read: {0}")]
    InvalidAccountBalance(String),
}

impl CallbackParseError {
    pub(crate) fn from_json(e: serde_json::Error) -> Self {
        let message = mask_long_digit_runs(&e.to_string());
        match e.classify() {
            serde_json::error::Category::Data => CallbackParseError::Shape(message),
            _ => CallbackParseError::NotJson(message),
        }
    }
}

/// An error and its causes in one line (reqwest's own message is often just "error sending
/// request"). For a reqwest error whose URL holds a secret, pass `error.without_url()`.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(code: &str, message: &str) -> DarajaError {
        DarajaError::Refused {
            api: Api::StkPush,
            status: 400,
            request_id: "r".into(),
            error_code: code.into(),
            error_message: message.into(),
        }
    }

    #[test]
    fn invalid_token_codes() {
        assert!(refused("404.001.03", "Invalid Access Token").is_invalid_token());
        assert!(
            refused("401.002.01", "Error Occurred - Invalid Access Token - x").is_invalid_token()
        );
        assert!(refused("401.003.01", "no apiproduct match found").is_invalid_token());
        assert!(refused("400.003.01", "Invalid Access Token").is_invalid_token());
        assert!(!refused("400.003.01", "Bad Request").is_invalid_token());
        assert!(!refused("400.002.02", "Bad Request - Invalid PhoneNumber").is_invalid_token());
    }

    #[test]
    fn what_may_have_been_processed() {
        let push = Api::StkPush;
        assert!(
            DarajaError::Timeout {
                api: push,
                after: Duration::from_secs(1)
            }
            .may_have_been_processed()
        );
        assert!(
            DarajaError::Transport {
                api: push,
                reason: "reset".into()
            }
            .may_have_been_processed()
        );
        assert!(
            DarajaError::UnexpectedStatus {
                api: push,
                status: 503,
                body_excerpt: String::new()
            }
            .may_have_been_processed()
        );
        assert!(
            !DarajaError::UnexpectedStatus {
                api: push,
                status: 429,
                body_excerpt: String::new()
            }
            .may_have_been_processed()
        );
        assert!(
            DarajaError::Malformed {
                api: push,
                status: 200,
                reason: String::new()
            }
            .may_have_been_processed()
        );
        assert!(
            !DarajaError::NotSent {
                api: push,
                reason: "refused".into()
            }
            .may_have_been_processed()
        );
        assert!(!refused("500.001.1001", "Wrong credentials").may_have_been_processed());
        assert!(
            !DarajaError::Timeout {
                api: Api::OAuth,
                after: Duration::from_secs(1)
            }
            .may_have_been_processed()
        );
    }

    #[test]
    fn metric_labels_stay_tidy() {
        assert_eq!(refused("500.001.1001", "").outcome_label(), "500.001.1001");
        assert_eq!(refused("<script>", "").outcome_label(), "other_error_code");
        assert_eq!(refused("", "").outcome_label(), "other_error_code");
    }
}
