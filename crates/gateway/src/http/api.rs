//! The merchant API: create a payment, read it, list payments, ask Daraja about one now.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mpesa_domain::{Msisdn, PaymentStatus, parse_payment_request};
use mpesa_storage::{PageRequest, PaymentChannel, PaymentFilter, StoredResponse};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::http::auth::Merchant;
use crate::http::error::ApiError;
use crate::http::extract::PaymentId;
use crate::payments::{
    IdempotencyKey, NewPaymentRequest, Origin, PaymentView, PushWhen, StartPayment, Started,
    start_answer,
};
use crate::state::AppState;

/// The body of `POST /api/v1/payments`. Unknown fields are refused.
///
/// The `pattern`s say exactly what `mpesa_domain::parse_payment_request` accepts (surrounding
/// whitespace is trimmed first; lengths count characters after trimming), so generated clients
/// and Schemathesis (`scripts/schemathesis`) can tell a valid body from an invalid one.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // documents the accepted body; parsing is done field by field for clear errors
pub struct CreatePaymentRequest {
    /// Kenyan M-Pesa number in any usual form: `0712345678`, `+254712345678`, `254712345678`,
    /// `712345678`, spaces or dashes allowed.
    #[schema(
        example = "0708374149",
        pattern = r"^[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*(?:\+[ -]*2[ -]*5[ -]*4|[ -]*2[ -]*5[ -]*4|[ -]*0)?[ -]*[17](?:[ -]*[0-9]){8}[ -]*[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    pub phone: String,
    /// Whole shillings, within AMOUNT_MIN..AMOUNT_MAX (default 1..250000).
    #[schema(example = 10, minimum = 1, maximum = 250000)]
    pub amount: i64,
    /// The account reference shown on the phone: 1–12 letters, digits, spaces or `- _ . / : +`.
    /// Generated when absent.
    #[schema(
        example = "INV0042",
        pattern = r"^[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[A-Za-z0-9_./:+-](?:[A-Za-z0-9 _./:+-]{0,10}[A-Za-z0-9_./:+-])?[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    pub reference: Option<String>,
    /// Your description, 1 to 100 characters without control characters; Daraja gets a
    /// 13-character form of it.
    #[schema(
        example = "Dance class",
        pattern = r"^[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\x00-\x1f\x7f-\x9f \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000](?:[^\x00-\x1f\x7f-\x9f]{0,98}[^\x00-\x1f\x7f-\x9f \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000])?[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    pub description: Option<String>,
    /// Where the receipt is emailed when the payment completes: at most 254 characters, one `@`,
    /// a dotted domain, no spaces, control characters or `< > " , ;`.
    #[schema(
        example = "customer@example.com",
        max_length = 254,
        pattern = r#"^[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\x00-\x1f\x7f-\x9f \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000<>",;@]+@[^\x00-\x1f\x7f-\x9f \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000<>",;@.][^\x00-\x1f\x7f-\x9f \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000<>",;@]*\.[^\x00-\x1f\x7f-\x9f \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000<>",;@]*[^\x00-\x1f\x7f-\x9f \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000<>",;@.][\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"#
    )]
    pub customer_email: Option<String>,
    /// A Telegram chat that gets the receipt.
    pub telegram_chat_id: Option<i64>,
    /// Your own data, a JSON object of at most 4 KiB, returned with the payment and in webhooks.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentList {
    pub data: Vec<PaymentView>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// The filters of `GET /api/v1/payments`; an empty text filter is the same as none.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ListParams {
    /// initiated, pending, completed, failed, cancelled, timed_out or rejected
    #[param(
        pattern = r"^[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*(?:initiated|pending|completed|failed|cancelled|timed_out|rejected)?[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    pub status: Option<String>,
    /// A phone number in any form `phone` takes in a new payment.
    #[param(
        pattern = r"^[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*(?:(?:\+[ -]*2[ -]*5[ -]*4|[ -]*2[ -]*5[ -]*4|[ -]*0)?[ -]*[17](?:[ -]*[0-9]){8}[ -]*)?[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    pub phone: Option<String>,
    /// The exact reference, at most 64 characters.
    #[param(max_length = 64)]
    pub reference: Option<String>,
    /// The exact account (`AccountReference` of a push, `BillRefNumber` of a C2B payment): the
    /// same filter as `reference`, at most 64 characters.
    #[param(max_length = 64)]
    pub account_reference: Option<String>,
    /// stk or c2b
    #[param(
        pattern = r"^[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*(?:stk|c2b)?[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    pub channel: Option<String>,
    /// The exact M-Pesa receipt number (STK `MpesaReceiptNumber`, C2B `TransID`).
    #[param(max_length = 64)]
    pub receipt: Option<String>,
    /// 1 to 100, default 20
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[param(max_length = 200)]
    pub cursor: Option<String>,
}

/// The error body of every non-2xx answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    #[schema(example = "validation_error")]
    pub code: String,
    pub message: String,
    /// The offending field, for validation errors.
    pub field: Option<String>,
    /// Daraja's own error code, for `daraja_refused`.
    pub daraja_error_code: Option<String>,
}

const MAX_IDEMPOTENCY_KEY: usize = 255;

/// Start a payment: an STK push to the customer's phone.
#[utoipa::path(
    post, path = "/api/v1/payments", tag = "payments",
    request_body = CreatePaymentRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: the same key and body get the first answer again; the same key with another body gets 409. 1 to 255 printable ASCII characters.", pattern = r"^[\x21-\x7e](?:[\t\x20-\x7e]{0,253}[\x21-\x7e])?$")),
    responses(
        (status = 201, description = "Stored and pushed (or, when Daraja's answer was lost, stored and being resolved)", body = PaymentView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 502, description = "Daraja refused the push; the payment is `rejected`", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn create_payment(
    State(state): State<AppState>,
    Merchant(key): Merchant,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let value = json_body(&headers, body)?;
    let (request, canonical) = parse_create_request(&value, &state)?;
    let idempotency =
        idempotency_key(&headers)?.map(|k| IdempotencyKey::new(key.id.clone(), k, &canonical));
    let start = StartPayment {
        request,
        origin: Origin::ApiKey(key.id.clone()),
        idempotency,
        push: PushWhen::Now,
        limits: Vec::new(),
    };
    match state.payments.start(start).await? {
        Started::Pushed(outcome) => Ok(respond(start_answer(&outcome), false)),
        Started::Answered(answer) => Ok(respond(answer, true)),
        Started::InProgress { payment_id } => Err(ApiError::IdempotencyInProgress { payment_id }),
        Started::KeyReused => Err(ApiError::IdempotencyKeyReused),
        other => Err(ApiError::Internal(format!(
            "an API start came back as {other:?}"
        ))),
    }
}

/// Remembers the answer given for `key` (the service's idempotency mechanism).
pub(crate) async fn save_answer(
    state: &AppState,
    api_key_id: &str,
    key: Option<&str>,
    answer: &StoredResponse,
) {
    if let Some(k) = key {
        state
            .payments
            .idempotency
            .remember_in(api_key_id, k, answer)
            .await;
    }
}

/// An answer given again for a retried idempotency key.
pub(crate) fn replay(stored: StoredResponse) -> Response {
    respond(stored, true)
}

/// An answer of `POST /api/v1/payments` (or another creating route), first given or
/// `replayed`; a created payment's `Location`.
fn respond(answer: StoredResponse, replayed: bool) -> Response {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    let location = (status == StatusCode::CREATED)
        .then(|| serde_json::from_str::<Value>(&answer.body).ok())
        .flatten()
        .and_then(|v| v["id"].as_str().map(|id| format!("/api/v1/payments/{id}")))
        .and_then(|l| HeaderValue::from_str(&l).ok());
    let mut r = (status, answer.body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if replayed {
        r.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    } else if let Some(location) = location {
        r.headers_mut().insert(header::LOCATION, location);
    }
    r
}

/// Get one payment.
#[utoipa::path(
    get, path = "/api/v1/payments/{id}", tag = "payments",
    params(("id" = String, Path, description = "The payment id, `pay_…`")),
    responses((status = 200, body = PaymentView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn get_payment(
    State(state): State<AppState>,
    _merchant: Merchant,
    PaymentId(id): PaymentId,
) -> Result<Json<PaymentView>, ApiError> {
    let p = state.payments.get(&id).await?;
    let mut view = PaymentView::from(&p);
    view.refund_status = state
        .money_out
        .refunds
        .status_of_payment(&p.id)
        .await?
        .map(|r| r.status.as_str().to_owned());
    Ok(Json(view))
}

/// List payments, newest first.
#[utoipa::path(
    get, path = "/api/v1/payments", tag = "payments",
    params(ListParams),
    responses((status = 200, body = PaymentList), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn list_payments(
    State(state): State<AppState>,
    _merchant: Merchant,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<PaymentList>, ApiError> {
    let mut filter = PaymentFilter::default();
    // `?phone=&status=` (what many form-built URLs send) filters nothing; `limit` is a number
    // and an empty one is refused.
    let params: HashMap<String, String> = params
        .into_iter()
        .filter(|(k, v)| k == "limit" || !v.trim().is_empty())
        .collect();
    for (k, v) in &params {
        match k.as_str() {
            "status" => filter.status = Some(PaymentStatus::parse(v.trim()).ok_or_else(|| {
                ApiError::validation(
                    "status",
                    "one of initiated, pending, completed, failed, cancelled, timed_out, rejected",
                )
            })?),
            "phone" => {
                filter.phone = Some(
                    Msisdn::parse(v)
                        .map_err(|e| ApiError::validation("phone", e.to_string()))?
                        .to_string(),
                )
            }
            "reference" | "account_reference" => {
                if v.chars().count() > 64 {
                    return Err(ApiError::validation(k, "at most 64 characters"));
                }
                filter.reference = Some(v.trim().to_owned())
            }
            "channel" => {
                filter.channel = Some(
                    PaymentChannel::parse(v.trim())
                        .ok_or_else(|| ApiError::validation("channel", "stk or c2b"))?,
                )
            }
            "receipt" => {
                if v.chars().count() > 64 {
                    return Err(ApiError::validation("receipt", "at most 64 characters"));
                }
                filter.receipt = Some(v.trim().to_owned())
            }
            "limit" | "cursor" => {}
            other => return Err(ApiError::validation(other, "unknown query parameter")),
        }
    }
    let limit = match params.get("limit") {
        None => 20,
        Some(l) => l
            .parse::<u32>()
            .ok()
            .filter(|l| (1..=100).contains(l))
            .ok_or_else(|| ApiError::validation("limit", "a number from 1 to 100"))?,
    };
    let cursor = params.get("cursor").cloned();
    if cursor.as_ref().is_some_and(|c| c.len() > 200) {
        return Err(ApiError::validation(
            "cursor",
            "not a cursor from a previous page",
        ));
    }
    let page = state
        .payments
        .reads()
        .list(&filter, &PageRequest { limit, cursor })
        .await
        .map_err(|e| match e {
            mpesa_storage::StorageError::InvalidInput(_) => {
                ApiError::validation("cursor", "not a cursor from a previous page")
            }
            other => other.into(),
        })?;
    Ok(Json(PaymentList {
        data: page.items.iter().map(PaymentView::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Ask Daraja about a payment now (STK Query) and apply the answer.
#[utoipa::path(
    post, path = "/api/v1/payments/{id}/refresh", tag = "payments",
    params(("id" = String, Path, description = "The payment id, `pay_…`")),
    responses(
        (status = 200, body = PaymentView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "The payment has no CheckoutRequestID to ask about", body = ErrorBody),
        (status = 502, body = ErrorBody), (status = 503, body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn refresh_payment(
    State(state): State<AppState>,
    _merchant: Merchant,
    PaymentId(id): PaymentId,
) -> Result<Json<PaymentView>, ApiError> {
    let p = state.payments.refresh(&id).await?;
    Ok(Json(PaymentView::from(&p)))
}

/// Reads a JSON body: the right content type, within the size limit, valid JSON.
pub fn json_body(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Value, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime != "application/json" && !mime.ends_with("+json") {
        return Err(ApiError::UnsupportedMediaType);
    }
    let bytes = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge
        } else {
            ApiError::BadJson(rejection.body_text())
        }
    })?;
    serde_json::from_slice(&bytes).map_err(|e| ApiError::BadJson(e.to_string()))
}

pub(crate) fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    match headers.get("idempotency-key") {
        None => Ok(None),
        Some(v) => {
            let k = v
                .to_str()
                .map_err(|_| ApiError::validation("Idempotency-Key", "printable ASCII only"))?
                .trim();
            if k.is_empty() || k.len() > MAX_IDEMPOTENCY_KEY {
                return Err(ApiError::validation(
                    "Idempotency-Key",
                    "1 to 255 characters",
                ));
            }
            Ok(Some(k.to_owned()))
        }
    }
}

/// Checks every field with [`mpesa_domain::parse_payment_request`] (the function the fuzz
/// target `create_payment` runs), naming the first bad one (the service generates a missing
/// reference and description). Returns the request and its canonical form (the idempotency fingerprint: the
/// same request written differently is the same request).
fn parse_create_request(
    v: &Value,
    state: &AppState,
) -> Result<(NewPaymentRequest, Value), ApiError> {
    let parsed = parse_payment_request(v, state.payments.amount_bounds())
        .map_err(|e| ApiError::validation(&e.field, e.message))?;
    Ok((
        NewPaymentRequest {
            phone: parsed.phone,
            amount: parsed.amount,
            reference: parsed.reference,
            description: parsed.description,
            customer_email: parsed.customer_email,
            telegram_chat_id: parsed.telegram_chat_id,
            metadata: parsed.metadata,
            payment_link_id: None,
            customer_language: None,
        },
        parsed.canonical,
    ))
}
