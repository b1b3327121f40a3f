//! The one error type of the HTTP edge: every failure becomes a JSON answer
//! `{"error":{"code","message","field"?}}` with the right status. Internal details are logged,
//! never returned.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::payments::PaymentError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    Validation { field: String, message: String },
    #[error("the body is not valid JSON: {0}")]
    BadJson(String),
    #[error("send the body as application/json")]
    UnsupportedMediaType,
    #[error("the body is too large")]
    PayloadTooLarge,
    #[error("a valid API key is required: Authorization: Bearer <key>")]
    Unauthorized,
    #[error("{0}")]
    NotFound(&'static str),
    #[error("this Idempotency-Key was used with another request body")]
    IdempotencyKeyReused,
    #[error("a request with this Idempotency-Key is still being processed; retry shortly")]
    IdempotencyInProgress { payment_id: String },
    #[error("{0}")]
    Conflict(String),
    #[error("Daraja refused the request: {message}")]
    /// (A refused push answers with the payment too: `payments::start_answer`.)
    DarajaRefused {
        daraja_error_code: String,
        message: String,
    },
    #[error("Daraja could not be reached: {0}")]
    DarajaUnavailable(String),
    #[error("the database is unavailable; try again shortly")]
    Unavailable(String),
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn validation(field: &str, message: impl Into<String>) -> Self {
        ApiError::Validation {
            field: field.to_owned(),
            message: message.into(),
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::Validation { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::BadJson(_) => StatusCode::BAD_REQUEST,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::IdempotencyKeyReused
            | ApiError::IdempotencyInProgress { .. }
            | ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::DarajaRefused { .. } | ApiError::DarajaUnavailable(_) => {
                StatusCode::BAD_GATEWAY
            }
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::Validation { .. } => "validation_error",
            ApiError::BadJson(_) => "invalid_json",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::Unauthorized => "unauthorized",
            ApiError::NotFound(_) => "not_found",
            ApiError::IdempotencyKeyReused => "idempotency_key_reused",
            ApiError::IdempotencyInProgress { .. } => "idempotency_in_progress",
            ApiError::Conflict(_) => "conflict",
            ApiError::DarajaRefused { .. } => "daraja_refused",
            ApiError::DarajaUnavailable(_) => "daraja_unavailable",
            ApiError::Unavailable(_) => "service_unavailable",
            ApiError::Internal(_) => "internal_error",
        }
    }

    /// The JSON body and status.
    pub fn to_parts(&self) -> (StatusCode, serde_json::Value) {
        let mut error = json!({ "code": self.code(), "message": self.to_string() });
        match self {
            ApiError::Validation { field, .. } => error["field"] = json!(field),
            ApiError::IdempotencyInProgress { payment_id } => {
                error["payment_id"] = json!(payment_id)
            }
            ApiError::DarajaRefused {
                daraja_error_code, ..
            } => error["daraja_error_code"] = json!(daraja_error_code),
            _ => {}
        }
        (self.status(), json!({ "error": error }))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::Internal(detail) => tracing::error!(%detail, "internal error"),
            ApiError::Unavailable(detail) => tracing::warn!(%detail, "database unavailable"),
            _ => {}
        }
        let (status, body) = self.to_parts();
        let mut response = (status, axum::Json(body)).into_response();
        if matches!(self, ApiError::Unauthorized) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if matches!(self, ApiError::PayloadTooLarge) {
            // The rest of the body was never read, so the connection cannot carry another
            // request: say so, or a client's pool sends its next request into a closed socket.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

impl From<mpesa_storage::StorageError> for ApiError {
    fn from(e: mpesa_storage::StorageError) -> Self {
        match e {
            mpesa_storage::StorageError::Unavailable(d) => ApiError::Unavailable(d),
            mpesa_storage::StorageError::NotFound => ApiError::NotFound("not found"),
            mpesa_storage::StorageError::InvalidInput(d) => ApiError::validation("request", d),
            mpesa_storage::StorageError::Conflict(rule) => {
                ApiError::Conflict(format!("conflicts with an existing record ({rule})"))
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<PaymentError> for ApiError {
    fn from(e: PaymentError) -> Self {
        match e {
            PaymentError::Storage(s) => s.into(),
            PaymentError::NotFound => ApiError::NotFound("no such payment"),
            PaymentError::NotQueryable { status } if status.is_final() => ApiError::Conflict(
                format!("the payment is {status} and Daraja gave it no CheckoutRequestID: there is nothing to ask Daraja about"),
            ),
            PaymentError::NotQueryable { .. } => ApiError::Conflict(
                "Daraja's answer to the push has not come, so there is no CheckoutRequestID to ask about yet; a callback that names the payment settles it, or a person does".into(),
            ),
            PaymentError::Daraja(d) => match d.error_code() {
                Some(code) => ApiError::DarajaRefused {
                    daraja_error_code: code.to_owned(),
                    message: d.error_message().unwrap_or_default().to_owned(),
                },
                None => ApiError::DarajaUnavailable(d.to_string()),
            },
        }
    }
}

impl From<crate::money_out::initiator::InitiatorError> for ApiError {
    fn from(e: crate::money_out::initiator::InitiatorError) -> Self {
        use crate::money_out::initiator::InitiatorError as E;
        match e {
            E::Storage(s) => s.into(),
            E::Refused(m) => ApiError::DarajaUnavailable(m),
            // Nothing was sent: a setting is missing, not a failure of Daraja's.
            e @ E::NotConfigured => ApiError::Conflict(e.to_string()),
        }
    }
}

impl From<crate::money_out::RefundError> for ApiError {
    fn from(e: crate::money_out::RefundError) -> Self {
        use crate::money_out::RefundError as E;
        match e {
            E::Storage(s) => s.into(),
            E::Initiator(i) => i.into(),
            E::PaymentNotFound => ApiError::NotFound("no such payment"),
            E::NotFound => ApiError::NotFound("no such refund"),
            E::Invalid(m) => ApiError::validation("reason", m),
            E::Refused(m) => ApiError::Conflict(m),
            E::KeyReused => ApiError::IdempotencyKeyReused,
            E::InProgress { id } => ApiError::IdempotencyInProgress { payment_id: id },
            e @ E::NotConfigured => ApiError::Conflict(e.to_string()),
        }
    }
}

impl From<crate::money_out::PayoutError> for ApiError {
    fn from(e: crate::money_out::PayoutError) -> Self {
        use crate::money_out::PayoutError as E;
        match e {
            E::Storage(s) => s.into(),
            E::NotFound => ApiError::NotFound("no such payout"),
            E::Invalid { field, message } => ApiError::validation(field, message),
            e @ E::Disabled => ApiError::Conflict(e.to_string()),
            E::Refused(m) => ApiError::Conflict(m),
            E::KeyReused => ApiError::IdempotencyKeyReused,
            E::InProgress { id } => ApiError::IdempotencyInProgress { payment_id: id },
        }
    }
}
