//! The merchant API: create a payment, read it, list payments, ask Daraja about one now.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mpesa_domain::{AccountReference, Amount, AmountError, Description, Msisdn, PaymentStatus};
use mpesa_storage::{PageRequest, PaymentFilter, PaymentSource, StoredResponse};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use crate::http::auth::Merchant;
use crate::http::error::ApiError;
use crate::ids::{random_token, sha256_hex};
use crate::payments::{CreateOutcome, NewPaymentRequest, Origin, PaymentView, PushOutcome};
use crate::state::AppState;

/// The body of `POST /api/v1/payments`. Unknown fields are refused.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[allow(dead_code)] // documents the accepted body; parsing is done field by field for clear errors
pub struct CreatePaymentRequest {
    /// Kenyan M-Pesa number in any usual form: `0712345678`, `+254712345678`, `254712345678`,
    /// `712345678`, spaces or dashes allowed.
    #[schema(example = "0708374149")]
    pub phone: String,
    /// Whole shillings, within AMOUNT_MIN..AMOUNT_MAX (default 1..250000).
    #[schema(example = 10, minimum = 1, maximum = 250000)]
    pub amount: i64,
    /// The account reference shown on the phone: 1–12 letters, digits, spaces or `- _ . / : +`.
    /// Generated when absent.
    #[schema(example = "INV0042", max_length = 12)]
    pub reference: Option<String>,
    /// Your description, up to 100 characters; Daraja gets a 13-character form of it.
    #[schema(example = "Dance class", max_length = 100)]
    pub description: Option<String>,
    /// Where the receipt is emailed when the payment completes.
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

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ListParams {
    /// initiated, pending, completed, failed, cancelled, timed_out or rejected
    pub status: Option<String>,
    pub phone: Option<String>,
    pub reference: Option<String>,
    /// 1 to 100, default 20
    pub limit: Option<u32>,
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

const MAX_METADATA_BYTES: usize = 4096;
const MAX_IDEMPOTENCY_KEY: usize = 255;

/// Start a payment: an STK push to the customer's phone.
#[utoipa::path(
    post, path = "/api/v1/payments", tag = "payments",
    request_body = CreatePaymentRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: the same key and body get the first answer again; the same key with another body gets 409.")),
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
    let idempotency_key = idempotency_key(&headers)?;
    let claim = idempotency_key
        .clone()
        .map(|k| (k, sha256_hex(canonical.to_string())));
    let origin = Origin {
        source: PaymentSource::Api,
        api_key_id: Some(key.id.clone()),
    };
    let payment = match state.payments.create(request, origin, claim).await? {
        CreateOutcome::Created(p) => *p,
        CreateOutcome::Replay(stored) => return Ok(replay(stored)),
        CreateOutcome::KeyReused => return Err(ApiError::IdempotencyKeyReused),
        CreateOutcome::InProgress { payment_id } => {
            // The first request is still running, or its process died after storing the
            // payment: once the payment has left `initiated`, its state is the answer.
            match state.storage.get_payment(&payment_id).await? {
                Some(p) if p.status != PaymentStatus::Initiated => {
                    let answer = created(&PaymentView::from(&p));
                    save_answer(&state, &key.id, idempotency_key.as_deref(), &answer).await;
                    return Ok(replay(answer));
                }
                _ => return Err(ApiError::IdempotencyInProgress { payment_id }),
            }
        }
    };
    let (status, body) = match state.payments.send_push(payment).await? {
        PushOutcome::Accepted(p) | PushOutcome::Unknown { payment: p, .. } => {
            state.health.ok("daraja");
            (
                StatusCode::CREATED,
                serde_json::to_value(PaymentView::from(&p)).unwrap_or_default(),
            )
        }
        PushOutcome::Refused { payment, error } => {
            if error.is_not_sent() || error.error_code().is_none() {
                state.health.failing("daraja", error.to_string());
            } else {
                state.health.ok("daraja");
            }
            let e = ApiError::DarajaRefused {
                daraja_error_code: error
                    .error_code()
                    .map(str::to_owned)
                    .unwrap_or_else(|| error.outcome_label()),
                message: error
                    .error_message()
                    .map(str::to_owned)
                    .unwrap_or_else(|| error.to_string()),
                payment: Some(Box::new(PaymentView::from(&payment))),
            };
            e.to_parts()
        }
    };
    let answer = StoredResponse {
        status: status.as_u16(),
        body: body.to_string(),
    };
    if let Some(k) = idempotency_key.as_deref()
        && let Err(e) = state
            .storage
            .save_idempotent_response(&key.id, k, &answer)
            .await
    {
        tracing::warn!(error = %e, "could not store the idempotent answer");
    }
    let mut response = (status, Json(body)).into_response();
    if status == StatusCode::CREATED
        && let Some(id) = serde_json::from_str::<Value>(&answer.body)
            .ok()
            .and_then(|v| v["id"].as_str().map(str::to_owned))
        && let Ok(location) = HeaderValue::from_str(&format!("/api/v1/payments/{id}"))
    {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

fn created(view: &PaymentView) -> StoredResponse {
    StoredResponse {
        status: 201,
        body: serde_json::to_string(view).unwrap_or_default(),
    }
}

async fn save_answer(
    state: &AppState,
    api_key_id: &str,
    key: Option<&str>,
    answer: &StoredResponse,
) {
    if let Some(k) = key
        && let Err(e) = state
            .storage
            .save_idempotent_response(api_key_id, k, answer)
            .await
    {
        tracing::warn!(error = %e, "could not store the idempotent answer");
    }
}

fn replay(stored: StoredResponse) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let mut r = (status, stored.body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
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
    Path(id): Path<String>,
) -> Result<Json<PaymentView>, ApiError> {
    if id.len() > 64 {
        return Err(ApiError::NotFound("no such payment"));
    }
    let p = state
        .storage
        .get_payment(&id)
        .await?
        .ok_or(ApiError::NotFound("no such payment"))?;
    Ok(Json(PaymentView::from(&p)))
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
    for (k, v) in &params {
        match k.as_str() {
            "status" => filter.status = Some(PaymentStatus::parse(v).ok_or_else(|| {
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
            "reference" => {
                if v.chars().count() > 64 {
                    return Err(ApiError::validation("reference", "at most 64 characters"));
                }
                filter.reference = Some(v.trim().to_owned())
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
        .storage
        .list_payments(&filter, &PageRequest { limit, cursor })
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
    Path(id): Path<String>,
) -> Result<Json<PaymentView>, ApiError> {
    if id.len() > 64 {
        return Err(ApiError::NotFound("no such payment"));
    }
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

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
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

/// Checks every field, naming the first bad one. Returns the request and its canonical form
/// (the idempotency fingerprint: the same request written differently is the same request).
fn parse_create_request(
    v: &Value,
    state: &AppState,
) -> Result<(NewPaymentRequest, Value), ApiError> {
    let obj = v
        .as_object()
        .ok_or_else(|| ApiError::validation("body", "expected a JSON object"))?;
    const KNOWN: &[&str] = &[
        "phone",
        "amount",
        "reference",
        "description",
        "customer_email",
        "telegram_chat_id",
        "metadata",
    ];
    if let Some(unknown) = obj.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        let shown: String = unknown.chars().take(40).collect();
        return Err(ApiError::validation(&shown, "unknown field"));
    }
    let phone = match obj.get("phone") {
        Some(Value::String(s)) => {
            Msisdn::parse(s).map_err(|e| ApiError::validation("phone", e.to_string()))?
        }
        Some(Value::Null) | None => return Err(ApiError::validation("phone", "phone is required")),
        Some(_) => return Err(ApiError::validation("phone", "phone must be a string")),
    };
    let bounds = state.payments.amount_bounds();
    let amount = match obj.get("amount") {
        Some(Value::Number(n)) => {
            let whole = match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => i,
                (None, Some(f)) if f.fract() == 0.0 && f.abs() < 1e15 => f as i64,
                (None, Some(_)) => {
                    return Err(ApiError::validation(
                        "amount",
                        AmountError::NotWhole.to_string(),
                    ));
                }
                _ => return Err(ApiError::validation("amount", "amount is out of range")),
            };
            Amount::new(whole, bounds).map_err(|e| ApiError::validation("amount", e.to_string()))?
        }
        Some(Value::Null) | None => {
            return Err(ApiError::validation("amount", "amount is required"));
        }
        Some(_) => {
            return Err(ApiError::validation(
                "amount",
                "amount must be a number of shillings",
            ));
        }
    };
    let reference_given = optional_string(obj, "reference")?;
    let reference = match &reference_given {
        Some(r) => AccountReference::parse(r)
            .map_err(|e| ApiError::validation("reference", format!("reference {e}")))?,
        None => AccountReference::parse(&format!("PAY{}", random_token(9).to_ascii_uppercase()))
            .expect("generated reference is valid"),
    };
    let description_given = optional_string(obj, "description")?;
    let description = match &description_given {
        Some(d) => Description::parse(d)
            .map_err(|e| ApiError::validation("description", format!("description {e}")))?,
        None => Description::parse(&format!("Payment {}", reference.as_str()))
            .expect("generated description is valid"),
    };
    let customer_email = match optional_string(obj, "customer_email")? {
        Some(e) => Some(
            check_email(&e)
                .ok_or_else(|| ApiError::validation("customer_email", "not an email address"))?,
        ),
        None => None,
    };
    let telegram_chat_id = match obj.get("telegram_chat_id") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(
            n.as_i64()
                .ok_or_else(|| ApiError::validation("telegram_chat_id", "a whole number"))?,
        ),
        Some(_) => return Err(ApiError::validation("telegram_chat_id", "a whole number")),
    };
    let metadata = match obj.get("metadata") {
        None | Some(Value::Null) => None,
        Some(m @ Value::Object(_)) => {
            if m.to_string().len() > MAX_METADATA_BYTES {
                return Err(ApiError::validation("metadata", "at most 4 KiB of JSON"));
            }
            Some(m.clone())
        }
        Some(_) => return Err(ApiError::validation("metadata", "a JSON object")),
    };
    let canonical = json!({
        "phone": phone.as_str(),
        "amount": amount.shillings(),
        "reference": reference_given.as_deref().map(str::trim),
        "description": description_given.as_deref().map(str::trim),
        "customer_email": customer_email,
        "telegram_chat_id": telegram_chat_id,
        "metadata": metadata,
    });
    Ok((
        NewPaymentRequest {
            phone,
            amount,
            reference,
            description,
            customer_email,
            telegram_chat_id,
            metadata,
        },
        canonical,
    ))
}

fn optional_string(
    obj: &serde_json::Map<String, Value>,
    field: &str,
) -> Result<Option<String>, ApiError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::validation(
            field,
            format!("{field} must be a string"),
        )),
    }
}

/// A plain check, not RFC 5322: one `@`, a dotted domain, no spaces or control characters.
pub fn check_email(raw: &str) -> Option<String> {
    let e = raw.trim();
    if e.len() > 254
        || e.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"' | ',' | ';')
        })
    {
        return None;
    }
    let (local, domain) = e.split_once('@')?;
    if local.is_empty()
        || domain.contains('@')
        || !domain.contains('.')
        || domain.starts_with('.')
        || domain.ends_with('.')
    {
        return None;
    }
    Some(e.to_owned())
}

#[cfg(test)]
mod tests {
    use super::check_email;

    #[test]
    fn emails() {
        assert_eq!(check_email(" a@b.co "), Some("a@b.co".into()));
        for bad in [
            "",
            "a",
            "a@b",
            "a@@b.co",
            "a b@c.co",
            "@b.co",
            "a@b.co\r\nBcc: x@y.z",
            "a@.co",
            "<a@b.co>",
        ] {
            assert_eq!(check_email(bad), None, "{bad}");
        }
    }
}
