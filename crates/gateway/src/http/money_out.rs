//! The merchant API for money going out: refund a payment, pay out, ask for balances. Only
//! translation: the rules are in `crate::money_out`.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
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
    /// Why (2 to 100 characters): kept with the refund and sent as the Reversal's remarks.
    #[schema(example = "Returned goods")]
    pub reason: String,
}

/// The body of `POST /api/v1/payouts`. Unknown fields are refused.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePayoutBody {
    /// The recipient's M-Pesa number, in any usual form.
    #[schema(example = "0708374149")]
    pub phone: String,
    /// Whole shillings, 10 to PAYOUT_MAX_AMOUNT.
    #[schema(example = 500)]
    pub amount: i64,
    /// `business` (BusinessPayment), `salary` (SalaryPayment) or `promotion` (PromotionPayment).
    #[schema(example = "business")]
    pub purpose: String,
    /// 2 to 100 characters.
    #[schema(example = "Rider payout week 12")]
    pub remarks: String,
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
    // serde names the field in its message ("missing field `reason`", "unknown field `x`").
    let message = e.to_string();
    let field = message
        .split('`')
        .nth(1)
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
        ("Idempotency-Key" = Option<String>, Header, description = "The same key and body get the first answer again."),
    ),
    responses(
        (status = 202, description = "Stored and the Reversal sent; the result comes later", body = RefundView),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Not completed, already refunded, or a refund in flight", body = ErrorBody),
        (status = 422, body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn refund_payment(
    State(state): State<AppState>,
    Merchant(key): Merchant,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    if id.len() > 64 {
        return Err(ApiError::NotFound("no such payment"));
    }
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
    responses((status = 200, body = RefundView), (status = 404, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn get_refund(
    State(state): State<AppState>,
    _merchant: Merchant,
    Path(id): Path<String>,
) -> Result<Json<RefundView>, ApiError> {
    if id.len() > 64 {
        return Err(ApiError::NotFound("no such refund"));
    }
    let r = state.money_out.refunds.get(&id).await?;
    Ok(Json(RefundView::from(&r)))
}

/// Pay a customer (B2C). Above PAYOUT_APPROVAL_ABOVE it waits for an admin's approval.
#[utoipa::path(
    post, path = "/api/v1/payouts", tag = "payouts",
    request_body = CreatePayoutBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "The same key and body get the first answer again.")),
    responses(
        (status = 202, description = "Stored, and sent unless it awaits approval", body = PayoutView),
        (status = 409, description = "Payouts are off, or the key is in use", body = ErrorBody),
        (status = 422, description = "A field, PAYOUT_MAX_AMOUNT or PAYOUT_DAILY_LIMIT", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn create_payout(
    State(state): State<AppState>,
    Merchant(key): Merchant,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let value = json_body(&headers, body)?;
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
    let view = state.money_out.payouts.view(&payout.id).await?;
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
    responses((status = 200, body = PayoutView), (status = 404, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn get_payout(
    State(state): State<AppState>,
    _merchant: Merchant,
    Path(id): Path<String>,
) -> Result<Json<PayoutView>, ApiError> {
    if id.len() > 64 {
        return Err(ApiError::NotFound("no such payout"));
    }
    Ok(Json(state.money_out.payouts.view(&id).await?))
}

/// List payouts, newest first (`status`, `phone`, `limit`, `cursor`).
#[utoipa::path(
    get, path = "/api/v1/payouts", tag = "payouts",
    responses((status = 200, body = PayoutList), (status = 422, body = ErrorBody)),
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
    responses((status = 202, body = BalanceList)),
    security(("api_key" = []))
)]
pub async fn ask_balance(
    State(state): State<AppState>,
    _merchant: Merchant,
) -> Result<Response, ApiError> {
    state
        .money_out
        .balances
        .ask()
        .await
        .map_err(|e| ApiError::DarajaUnavailable(e.to_string()))?;
    let data = state.money_out.balances.latest().await?;
    Ok((StatusCode::ACCEPTED, Json(BalanceList { data })).into_response())
}

/// The last Account Balance answers, and when they came.
#[utoipa::path(
    get, path = "/api/v1/balance", tag = "balance",
    responses((status = 200, body = BalanceList)),
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
