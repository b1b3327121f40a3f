//! The merchant API for checking a receipt code with Safaricom (Transaction Status). Only
//! translation: the rules are in `crate::money_out::receipts`.

use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use mpesa_storage::ReceiptCheck;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::http::api::ErrorBody;
use crate::http::auth::Merchant;
use crate::http::error::ApiError;
use crate::ids::rfc3339;
use crate::money_out::Requester;
use crate::money_out::receipts::{CheckAnswer, ReceiptError, parse_code};
use crate::payments::PaymentView;
use crate::state::AppState;

/// A receipt check: what Safaricom said about an M-Pesa receipt (Transaction Status) and the
/// payment it belongs to.
///
/// `status`: `pending` (asked; the answer has not come), `answered`, `failed` (no answer: the
/// request was refused or expired in M-Pesa's queue; ask again). `finding` (when answered):
/// `completed`, `reversed`, `not_found`, `other`. `outcome`: `booked` (a payment to our C2B
/// shortcode whose confirmation never came, booked now with `recovered_by: "status"`),
/// `already_booked` (we had it: `payment`), `other_short_code` (paid to someone else: not
/// booked), `awaiting_stk` (an open STK payment could be it), `not_booked`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ReceiptCheckView {
    #[schema(example = "rchk_0192f3a4b5c67d8e9f00112233445566")]
    pub id: String,
    #[schema(example = "SGA1XYZ123")]
    pub code: String,
    #[schema(example = "answered")]
    pub status: String,
    #[schema(example = "completed")]
    pub finding: Option<String>,
    #[schema(example = "booked")]
    pub outcome: Option<String>,
    /// Safaricom's `TransactionStatus` (`Completed`, `Reversed`…).
    pub transaction_status: Option<String>,
    /// The amount Safaricom reported, in shillings (may have cents).
    pub amount: Option<f64>,
    /// Who paid, as Safaricom names them.
    pub payer_name: Option<String>,
    /// The payer's number as Safaricom gave it (whole, masked or hashed).
    pub payer_msisdn: Option<String>,
    /// When it was paid (RFC 3339, UTC).
    pub paid_at: Option<String>,
    /// The shortcode or till it was paid to.
    pub short_code: Option<String>,
    /// Why it was not booked, when it was not.
    pub note: Option<String>,
    pub result_code: Option<String>,
    pub result_desc: Option<String>,
    pub payment_id: Option<String>,
    /// The payment it belongs to, when there is one.
    pub payment: Option<PaymentView>,
    /// `api:<key name>`, `admin:<name>`, `telegram:<chat>`.
    pub requested_by: String,
    pub created_at: String,
    pub answered_at: Option<String>,
}

impl ReceiptCheckView {
    pub fn new(check: &ReceiptCheck, payment: Option<&mpesa_storage::Payment>) -> Self {
        let d: Value = check
            .details
            .as_deref()
            .and_then(|d| serde_json::from_str(d).ok())
            .unwrap_or_default();
        let text = |k: &str| d[k].as_str().map(str::to_owned);
        ReceiptCheckView {
            id: check.id.clone(),
            code: check.code.clone(),
            status: check.status.as_str().to_owned(),
            finding: check.finding.clone(),
            outcome: check.outcome.clone(),
            transaction_status: text("transaction_status"),
            amount: d["amount_cents"].as_i64().map(|c| c as f64 / 100.0),
            payer_name: text("payer_name"),
            payer_msisdn: text("payer_msisdn"),
            paid_at: d["paid_at_ms"].as_i64().map(rfc3339),
            short_code: text("short_code"),
            note: text("note"),
            result_code: check.result_code.clone(),
            result_desc: check.result_desc.clone(),
            payment_id: payment.map(|p| p.id.clone()).or(check.payment_id.clone()),
            payment: payment.map(PaymentView::from),
            requested_by: check.requested_by.clone(),
            created_at: rfc3339(check.created_at),
            answered_at: check.finalized_at.map(rfc3339),
        }
    }

    pub fn of(answer: &CheckAnswer) -> Self {
        Self::new(&answer.check, answer.payment.as_ref())
    }
}

impl From<ReceiptError> for ApiError {
    fn from(e: ReceiptError) -> Self {
        match e {
            ReceiptError::Storage(s) => s.into(),
            ReceiptError::Invalid(why) => ApiError::validation("code", why),
            ReceiptError::NotConfigured => {
                ApiError::Conflict(ReceiptError::NotConfigured.to_string())
            }
            ReceiptError::NotFound => ApiError::NotFound(
                "this receipt has not been checked: POST /api/v1/receipts/{code}/check first",
            ),
        }
    }
}

/// The `{code}` of a receipt's path: refused with 422 unless it is 10 upper-case letters or
/// digits (the documented pattern).
pub struct ReceiptCode(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ReceiptCode {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(code)) => Ok(ReceiptCode(parse_code(&code)?)),
            Err(_) => Err(ReceiptError::Invalid("the receipt code is not readable".into()).into()),
        }
    }
}

/// Ask Safaricom about an M-Pesa receipt (Transaction Status). The answer comes later: read it
/// with `GET /api/v1/receipts/{code}`. While a check of the code is in flight, asking again
/// returns that check (nothing is sent twice).
#[utoipa::path(
    post, path = "/api/v1/receipts/{code}/check", tag = "receipts",
    params(("code" = String, Path, pattern = "^[A-Z0-9]{10}$", description = "The M-Pesa receipt: 10 upper-case letters and digits")),
    responses(
        (status = 202, description = "Stored and asked (or already being asked); the answer comes later", body = ReceiptCheckView),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The initiator is not configured (MPESA_INITIATOR_NAME, MPESA_INITIATOR_PASSWORD)", body = ErrorBody),
        (status = 422, description = "Not a plausible M-Pesa receipt", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn check_receipt(
    State(state): State<AppState>,
    Merchant(key): Merchant,
    ReceiptCode(code): ReceiptCode,
) -> Result<Response, ApiError> {
    let receipts = &state.money_out.receipts;
    let check = receipts
        .check(&code, &Requester::api_key(&key), None)
        .await?;
    let answer = receipts.answer(check).await?;
    Ok((StatusCode::ACCEPTED, Json(ReceiptCheckView::of(&answer))).into_response())
}

/// What Safaricom said about a receipt (the latest check) and the payment it belongs to.
#[utoipa::path(
    get, path = "/api/v1/receipts/{code}", tag = "receipts",
    params(("code" = String, Path, pattern = "^[A-Z0-9]{10}$", description = "The M-Pesa receipt: 10 upper-case letters and digits")),
    responses(
        (status = 200, body = ReceiptCheckView),
        (status = 401, body = ErrorBody),
        (status = 404, description = "The receipt was never checked", body = ErrorBody),
        (status = 422, description = "Not a plausible M-Pesa receipt", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn show_receipt(
    State(state): State<AppState>,
    _merchant: Merchant,
    ReceiptCode(code): ReceiptCode,
) -> Result<Json<ReceiptCheckView>, ApiError> {
    let answer = state.money_out.receipts.latest(&code).await?;
    Ok(Json(ReceiptCheckView::of(&answer)))
}
