//! The merchant API for money going out: refund a payment, pay out, ask for balances. Only
//! translation: the rules are in `crate::money_out`.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use mpesa_domain::Msisdn;
use mpesa_storage::{PageRequest, PayoutFilter, PayoutStatus, StoredResponse};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::http::api::{ErrorBody, idempotency_key, json_body, replay, save_answer};
use crate::http::auth::Merchant;
use crate::http::error::ApiError;
use crate::http::extract::{PaymentId, PayoutId, RefundId};
use crate::ids::sha256_hex;
use crate::money_out::balance::BalanceView;
use crate::money_out::payouts::PayoutCreated;
use crate::money_out::refunds::RefundCreated;
use crate::money_out::view::{PayoutView, RefundView};
use crate::money_out::{PayoutPurpose, PayoutRequest, Requester};
use crate::state::AppState;

/// The body of `POST /api/v1/payments/{id}/refund`. Unknown fields are refused.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundRequest {
    /// Why (2 to 100 characters after trimming, no control characters): kept with the refund
    /// and sent as the Reversal's remarks.
    #[schema(
        example = "Returned goods",
        pattern = r"^[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\x00-\x1f\x7f-\x9f \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000](?:[^\x00-\x1f\x7f-\x9f]{0,98})[^\x00-\x1f\x7f-\x9f \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    pub reason: String,
}

/// The body of `POST /api/v1/payouts`. Unknown fields are refused.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePayoutBody {
    /// The recipient's M-Pesa number, in any usual form.
    #[schema(
        example = "0708374149",
        pattern = r"^[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*(?:\+[ -]*2[ -]*5[ -]*4|[ -]*2[ -]*5[ -]*4|[ -]*0)?[ -]*[17](?:[ -]*[0-9]){8}[ -]*[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    pub phone: String,
    /// Whole shillings, 10 to PAYOUT_MAX_AMOUNT (150,000 unless set lower; over it, or over
    /// PAYOUT_DAILY_LIMIT, is refused with 422).
    #[schema(example = 500, minimum = 10, maximum = 150000)]
    pub amount: i64,
    /// `business` (BusinessPayment), `salary` (SalaryPayment) or `promotion` (PromotionPayment).
    #[schema(
        example = "business",
        pattern = r"^[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*(?:business|salary|promotion)[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    pub purpose: String,
    /// 2 to 100 characters after trimming, no control characters.
    #[schema(
        example = "Rider payout week 12",
        pattern = r"^[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\x00-\x1f\x7f-\x9f \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000](?:[^\x00-\x1f\x7f-\x9f]{0,98})[^\x00-\x1f\x7f-\x9f \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    pub remarks: String,
    /// At most 100 characters after trimming, no control characters.
    #[schema(
        pattern = r"^[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*(?:[^\x00-\x1f\x7f-\x9f \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000](?:[^\x00-\x1f\x7f-\x9f]{0,98}[^\x00-\x1f\x7f-\x9f \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000])?)?[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    pub occasion: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PayoutList {
    pub data: Vec<PayoutView>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BalanceList {
    pub data: Vec<BalanceView>,
}

fn accepted(body: Value) -> (StatusCode, Value) {
    (StatusCode::ACCEPTED, body)
}

fn field_error(e: serde_json::Error) -> ApiError {
    // serde names the field in "missing field `reason`" and "unknown field `x`"; in a type error
    // the quoted word is the value, not the field.
    let message = e.to_string();
    let field = Some(&message)
        .filter(|m| m.starts_with("missing field") || m.starts_with("unknown field"))
        .and_then(|m| m.split('`').nth(1))
        .map(str::to_owned)
        .unwrap_or_else(|| "body".into());
    ApiError::validation(&field, message)
}

/// Refund a completed payment (M-Pesa Reversal of the whole amount), once.
#[utoipa::path(
    post, path = "/api/v1/payments/{id}/refund", tag = "refunds",
    request_body = RefundRequest,
    params(
        ("id" = String, Path, description = "The payment id, `pay_…`"),
        ("Idempotency-Key" = Option<String>, Header, description = "The same key and body get the first answer again. 1 to 255 printable ASCII characters.", pattern = r"^[\x21-\x7e](?:[\t\x20-\x7e]{0,253}[\x21-\x7e])?$"),
    ),
    responses(
        (status = 202, description = "Stored and the Reversal sent; the result comes later", body = RefundView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "Not completed, already refunded, a refund in flight, the key in use, or no initiator configured", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 502, description = "Daraja refused the Reversal; the refund is `failed`", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn refund_payment(
    State(state): State<AppState>,
    Merchant(key): Merchant,
    PaymentId(id): PaymentId,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let value = json_body(&headers, body)?;
    let request: RefundRequest = serde_json::from_value(value).map_err(field_error)?;
    let idempotency_key = idempotency_key(&headers)?;
    let canonical = json!({ "refund_of": id, "reason": request.reason.trim() });
    let claim = idempotency_key
        .clone()
        .map(|k| (k, sha256_hex(canonical.to_string())));
    let refund = match state
        .money_out
        .refunds
        .request(&id, &request.reason, &Requester::api_key(&key), claim)
        .await?
    {
        RefundCreated::Created(r) => *r,
        RefundCreated::Replay(stored) => return Ok(replay(stored)),
    };
    let (status, body) =
        accepted(serde_json::to_value(RefundView::from(&refund)).unwrap_or_default());
    save_answer(
        &state,
        &key.id,
        idempotency_key.as_deref(),
        &StoredResponse {
            status: status.as_u16(),
            body: body.to_string(),
        },
    )
    .await;
    Ok((status, Json(body)).into_response())
}

/// Get one refund.
#[utoipa::path(
    get, path = "/api/v1/refunds/{id}", tag = "refunds",
    params(("id" = String, Path, description = "The refund id, `rfd_…`")),
    responses((status = 200, body = RefundView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn get_refund(
    State(state): State<AppState>,
    _merchant: Merchant,
    RefundId(id): RefundId,
) -> Result<Json<RefundView>, ApiError> {
    let refunds = &state.money_out.refunds;
    let r = refunds.get(&id).await?;
    Ok(Json(refunds.view(&r).await?))
}

/// Pay a customer (B2C). Above PAYOUT_APPROVAL_ABOVE it waits for an admin's approval.
#[utoipa::path(
    post, path = "/api/v1/payouts", tag = "payouts",
    request_body = CreatePayoutBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "The same key and body get the first answer again. 1 to 255 printable ASCII characters.", pattern = r"^[\x21-\x7e](?:[\t\x20-\x7e]{0,253}[\x21-\x7e])?$")),
    responses(
        (status = 202, description = "Stored, and sent unless it awaits approval", body = PayoutView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 409, description = "Payouts are off, or the key is in use", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, description = "A field, PAYOUT_MAX_AMOUNT or PAYOUT_DAILY_LIMIT", body = ErrorBody),
        (status = 502, description = "Daraja refused the B2C request; the payout is `failed`", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn create_payout(
    State(state): State<AppState>,
    Merchant(key): Merchant,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let mut value = json_body(&headers, body)?;
    // `500.0` and `5e2` are 500 shillings, as for payments; serde alone would refuse them.
    if let Some(amount) = value.get_mut("amount") {
        *amount = amount
            .as_number()
            .and_then(mpesa_domain::json_whole_number)
            .map(Value::from)
            .ok_or_else(|| ApiError::validation("amount", "a whole number of shillings"))?;
    }
    let body: CreatePayoutBody = serde_json::from_value(value).map_err(field_error)?;
    let phone =
        Msisdn::parse(&body.phone).map_err(|e| ApiError::validation("phone", e.to_string()))?;
    let purpose = PayoutPurpose::parse(&body.purpose)
        .ok_or_else(|| ApiError::validation("purpose", "one of business, salary, promotion"))?;
    let idempotency_key = idempotency_key(&headers)?;
    let canonical = json!({
        "payout_to": phone.as_str(),
        "amount": body.amount,
        "purpose": purpose.as_str(),
        "remarks": body.remarks.trim(),
        "occasion": body.occasion.as_deref().map(str::trim),
    });
    let claim = idempotency_key
        .clone()
        .map(|k| (k, sha256_hex(canonical.to_string())));
    let payout = match state
        .money_out
        .payouts
        .create(
            PayoutRequest {
                phone,
                amount: body.amount,
                purpose,
                remarks: body.remarks,
                occasion: body.occasion,
            },
            &Requester::api_key(&key),
            claim,
        )
        .await?
    {
        PayoutCreated::Created(p) => *p,
        PayoutCreated::Replay(stored) => return Ok(replay(stored)),
    };
    let view = state.money_out.payouts.reads().view(&payout.id).await?;
    let (status, body) = accepted(serde_json::to_value(view).unwrap_or_default());
    save_answer(
        &state,
        &key.id,
        idempotency_key.as_deref(),
        &StoredResponse {
            status: status.as_u16(),
            body: body.to_string(),
        },
    )
    .await;
    Ok((status, Json(body)).into_response())
}

/// Get one payout.
#[utoipa::path(
    get, path = "/api/v1/payouts/{id}", tag = "payouts",
    params(("id" = String, Path, description = "The payout id, `po_…`")),
    responses((status = 200, body = PayoutView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn get_payout(
    State(state): State<AppState>,
    _merchant: Merchant,
    PayoutId(id): PayoutId,
) -> Result<Json<PayoutView>, ApiError> {
    Ok(Json(state.money_out.payouts.reads().view(&id).await?))
}

/// List payouts, newest first (`status`, `phone`, `limit`, `cursor`).
#[utoipa::path(
    get, path = "/api/v1/payouts", tag = "payouts",
    responses((status = 200, body = PayoutList), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn list_payouts(
    State(state): State<AppState>,
    _merchant: Merchant,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<PayoutList>, ApiError> {
    let mut filter = PayoutFilter::default();
    let mut page = PageRequest {
        limit: 20,
        cursor: None,
    };
    for (k, v) in params.iter().filter(|(_, v)| !v.trim().is_empty()) {
        match k.as_str() {
            "status" => {
                filter.status = Some(PayoutStatus::parse(v.trim()).ok_or_else(|| {
                    ApiError::validation(
                        "status",
                        "one of awaiting_approval, pending, completed, failed, rejected",
                    )
                })?)
            }
            "phone" => {
                filter.phone = Some(
                    Msisdn::parse(v)
                        .map_err(|e| ApiError::validation("phone", e.to_string()))?
                        .to_string(),
                )
            }
            "limit" => {
                page.limit = v
                    .parse::<u32>()
                    .ok()
                    .filter(|l| (1..=100).contains(l))
                    .ok_or_else(|| ApiError::validation("limit", "a number from 1 to 100"))?
            }
            "cursor" if v.len() <= 200 => page.cursor = Some(v.clone()),
            "cursor" => {
                return Err(ApiError::validation(
                    "cursor",
                    "not a cursor from a previous page",
                ));
            }
            other => return Err(ApiError::validation(other, "unknown query parameter")),
        }
    }
    let listed = state
        .money_out
        .payouts
        .reads()
        .list(&filter, &page)
        .await
        .map_err(|e| match e {
            crate::money_out::PayoutError::Storage(mpesa_storage::StorageError::InvalidInput(
                _,
            )) => ApiError::validation("cursor", "not a cursor from a previous page"),
            other => other.into(),
        })?;
    Ok(Json(PayoutList {
        data: listed.items.iter().map(PayoutView::from).collect(),
        next_cursor: listed.next_cursor,
    }))
}

/// Ask Account Balance for the B2C and paybill/till shortcodes; the answers come by callback.
#[utoipa::path(
    post, path = "/api/v1/balance", tag = "balance",
    responses(
        (status = 202, description = "Asked; the answers come by callback (GET shows them)", body = BalanceList),
        (status = 401, body = ErrorBody),
        (status = 409, description = "No initiator configured", body = ErrorBody),
        (status = 502, body = ErrorBody), (status = 503, body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn ask_balance(
    State(state): State<AppState>,
    _merchant: Merchant,
) -> Result<Response, ApiError> {
    state.money_out.balances.ask().await?;
    let data = state.money_out.balances.latest().await?;
    Ok((StatusCode::ACCEPTED, Json(BalanceList { data })).into_response())
}

/// The last Account Balance answers, and when they came.
#[utoipa::path(
    get, path = "/api/v1/balance", tag = "balance",
    responses((status = 200, body = BalanceList), (status = 401, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn get_balance(
    State(state): State<AppState>,
    _merchant: Merchant,
) -> Result<Json<BalanceList>, ApiError> {
    Ok(Json(BalanceList {
        data: state.money_out.balances.latest().await?,
    }))
}
