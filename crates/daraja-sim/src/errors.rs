//! Daraja's synchronous refusals, exactly as it sends them, and the simulator's own errors.

use std::time::Duration;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use daraja::wire::ErrorEnvelope;

use crate::faults::FailureAnswer;
use crate::ids::request_id;
use daraja::endpoint::Api;

/// Problems starting or configuring a simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("invalid simulator configuration: {0}")]
    Config(String),
    #[error("{name}: {value:?} is not a valid value")]
    Setting { name: &'static str, value: String },
    #[error("the simulator's key does not load: {0}")]
    Key(String),
    #[error("could not build the HTTP client for callbacks: {0}")]
    HttpClient(String),
    #[error("refused: {0}")]
    Request(String),
}

/// Nothing matching arrived in time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("nothing matching arrived within {0:?}")]
pub struct WaitTimeout(pub Duration);

/// What Daraja answers instead of a success: its envelope
/// (`{"requestId","errorCode","errorMessage"}`), an empty body, or an Apigee fault object.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) body: ErrorBody,
}

#[derive(Debug, Clone)]
pub(crate) enum ErrorBody {
    Envelope(ErrorEnvelope),
    Empty,
    Json(serde_json::Value),
}

impl ApiError {
    pub(crate) fn new(status: u16, error_code: &str, error_message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            body: ErrorBody::Envelope(ErrorEnvelope::new(request_id(), error_code, error_message)),
        }
    }

    pub(crate) fn empty(status: u16) -> Self {
        ApiError {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            body: ErrorBody::Empty,
        }
    }

    /// `400.002.02 Bad Request - Invalid <Field>`.
    pub(crate) fn invalid_field(field: &str) -> Self {
        Self::new(400, "400.002.02", format!("Bad Request - Invalid {field}"))
    }

    /// `400.002.05 Invalid Request Payload`: not JSON, or not a JSON object.
    pub(crate) fn invalid_payload() -> Self {
        Self::new(400, "400.002.05", "Invalid Request Payload")
    }

    /// The C2B Register URL page's field error: `400.003.02 Bad Request`.
    pub(crate) fn c2b_bad_request() -> Self {
        Self::new(400, "400.003.02", "Bad Request")
    }

    /// `500.001.1001` with a message: the merchant-validation family of STK errors.
    pub(crate) fn merchant(message: &str) -> Self {
        Self::new(500, "500.001.1001", message)
    }

    /// `404.001.04 Invalid Authentication Header`: no `Authorization: Bearer …`.
    pub(crate) fn missing_auth_header() -> Self {
        Self::new(404, "404.001.04", "Invalid Authentication Header")
    }

    /// The invalid-token answer of each product (`Daraja's OAuth documentation`).
    pub(crate) fn invalid_token(api: Api, token: &str) -> Self {
        match api {
            Api::B2c | Api::AccountBalance => Self::new(
                401,
                "401.002.01",
                format!("Error Occurred - Invalid Access Token - {token}"),
            ),
            Api::C2bRegisterUrl | Api::C2bSimulate | Api::TransactionStatus => {
                Self::new(400, "400.003.01", "Invalid Access Token")
            }
            _ => Self::new(404, "404.001.03", "Invalid Access Token"),
        }
    }

    /// `404.001.01 Resource not found`.
    pub(crate) fn not_found() -> Self {
        Self::new(404, "404.001.01", "Resource not found")
    }

    /// `405.001 Method Not Allowed`.
    pub(crate) fn method_not_allowed() -> Self {
        Self::new(405, "405.001", "Method Not Allowed")
    }

    pub(crate) fn injected(answer: &FailureAnswer) -> Self {
        match answer {
            FailureAnswer::SpikeArrest => {
                Self::new(500, "500.003.02", "Error Occurred: Spike Arrest Violation")
            }
            FailureAnswer::SystemBusy => Self::new(
                500,
                "500.003.02",
                "System is busy. Please try again in few minutes.",
            ),
            FailureAnswer::QuotaViolation => Self::new(500, "500.003.03", "Quota Violation"),
            FailureAnswer::ServiceUnreachable => Self::new(
                500,
                "500.003.1001",
                "Service is currently unreachable. Please try again later.",
            ),
            FailureAnswer::Empty503 => Self::empty(503),
            FailureAnswer::Empty500 => Self::empty(500),
            FailureAnswer::Custom {
                status,
                error_code,
                error_message,
            } => Self::new(*status, error_code, error_message.clone()),
        }
    }

    /// The Apigee fault Register URL gives on the STK-only sandbox shortcode.
    pub(crate) fn apigee_fault(faultstring: &str) -> Self {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            body: ErrorBody::Json(serde_json::json!({
                "Envelope": {"Body": {"Fault": {"faultcode": "soap:Server", "faultstring": faultstring}}}
            })),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self.body {
            ErrorBody::Envelope(envelope) => (self.status, axum::Json(envelope)).into_response(),
            ErrorBody::Json(value) => (self.status, axum::Json(value)).into_response(),
            ErrorBody::Empty => (self.status, [(header::CONTENT_LENGTH, "0")]).into_response(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_product_invalid_token() {
        let code = |e: ApiError| match e.body {
            ErrorBody::Envelope(env) => (e.status.as_u16(), env.error_code.0, env.error_message),
            _ => panic!("not an envelope"),
        };
        assert_eq!(
            code(ApiError::invalid_token(Api::StkPush, "t")),
            (404, "404.001.03".into(), "Invalid Access Token".into())
        );
        assert_eq!(
            code(ApiError::invalid_token(Api::Reversal, "t")).1,
            "404.001.03"
        );
        assert_eq!(
            code(ApiError::invalid_token(Api::B2c, "tok")),
            (
                401,
                "401.002.01".into(),
                "Error Occurred - Invalid Access Token - tok".into()
            )
        );
        assert_eq!(
            code(ApiError::invalid_token(Api::TransactionStatus, "t")).1,
            "400.003.01"
        );
        assert_eq!(
            code(ApiError::invalid_token(Api::C2bRegisterUrl, "t")).0,
            400
        );
    }
}
