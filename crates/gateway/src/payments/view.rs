//! A payment as the merchant API, webhooks and notifications show it.

use mpesa_storage::Payment;
use serde::Serialize;
use utoipa::ToSchema;

use crate::ids::rfc3339;

/// A payment. Times are RFC 3339 in UTC. `status` is one of `initiated` (stored, push being
/// sent or its outcome unknown), `pending` (prompt on the phone), `completed`, `failed`,
/// `cancelled`, `timed_out`, `rejected` (Daraja refused the push).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct PaymentView {
    #[schema(example = "pay_0192f3a4b5c67d8e9f00112233445566")]
    pub id: String,
    #[schema(example = "completed")]
    pub status: String,
    /// The normalised number the prompt went to; for a C2B payment, the payer's number when
    /// Safaricom gave it whole or its hash matched a linked phone, else `null`.
    #[schema(example = "254708374149")]
    pub phone: Option<String>,
    /// Whole Kenyan shillings.
    #[schema(example = 10)]
    pub amount: i64,
    /// `stk` (we asked the phone) or `c2b` (the customer paid the paybill or till).
    #[schema(example = "stk")]
    pub channel: String,
    /// The account: `AccountReference` of a push, `BillRefNumber` of a C2B payment.
    #[schema(example = "INV0042")]
    pub account_reference: String,
    /// The same as `account_reference` (its earlier name).
    #[schema(example = "INV0042")]
    pub reference: String,
    /// The shortcode or till paid (C2B).
    pub business_short_code: Option<String>,
    /// The payer's first name as Safaricom reported it (C2B).
    pub payer_name: Option<String>,
    /// The C2B MSISDN exactly as Safaricom gave it: a number, a SHA-256 hex digest, or masked.
    pub payer_msisdn: Option<String>,
    /// `pull` or `status` when a recovery booked it because its confirmation never came.
    pub recovered_by: Option<String>,
    pub description: String,
    pub checkout_request_id: Option<String>,
    pub merchant_request_id: Option<String>,
    #[schema(example = "SGA1XYZ123")]
    pub mpesa_receipt_number: Option<String>,
    /// Daraja's result code (`0`, `1032`…) or, for a rejected push, its error code.
    pub result_code: Option<String>,
    pub result_desc: Option<String>,
    /// When M-Pesa says the payment happened.
    pub transaction_date: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub completed_at: Option<String>,
    /// True when a callback could not be trusted to settle this payment.
    pub needs_review: bool,
    pub review_reason: Option<String>,
    pub customer_email: Option<String>,
    pub telegram_chat_id: Option<i64>,
    /// The merchant's metadata object, as given.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    /// The payment link it was made through (`pl_…`), if any.
    pub payment_link_id: Option<String>,
    /// The language the customer chose on the pay page (`en` or `sw`); their receipts are
    /// written in it.
    #[schema(example = "sw")]
    pub customer_language: Option<String>,
    /// The latest refund's status (`pending`, `completed`, `failed`), when it was refunded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refund_status: Option<String>,
}

impl From<&Payment> for PaymentView {
    fn from(p: &Payment) -> Self {
        PaymentView {
            id: p.id.clone(),
            status: p.status.as_str().to_owned(),
            phone: p.phone.as_ref().map(|m| m.as_str().to_owned()),
            amount: p.amount.shillings(),
            channel: p.channel.as_str().to_owned(),
            account_reference: p.reference.clone(),
            reference: p.reference.clone(),
            business_short_code: p.business_short_code.clone(),
            payer_name: p.payer_name.clone(),
            payer_msisdn: p.payer_msisdn.clone(),
            recovered_by: p.recovered_by.clone(),
            description: p.description.clone(),
            checkout_request_id: p.checkout_request_id.clone(),
            merchant_request_id: p.merchant_request_id.clone(),
            mpesa_receipt_number: p.mpesa_receipt_number.clone(),
            result_code: p.result_code.clone(),
            result_desc: p.result_desc.clone(),
            transaction_date: p.transaction_date.map(rfc3339),
            created_at: rfc3339(p.created_at),
            updated_at: rfc3339(p.updated_at),
            completed_at: p.completed_at().map(rfc3339),
            needs_review: p.needs_review,
            review_reason: p.review_reason.clone(),
            customer_email: p.customer_email.clone(),
            telegram_chat_id: p.telegram_chat_id,
            metadata: p
                .metadata
                .as_deref()
                .and_then(|m| serde_json::from_str(m).ok()),
            payment_link_id: p.payment_link_id.clone(),
            customer_language: p.customer_language.map(|l| l.as_str().to_owned()),
            refund_status: None,
        }
    }
}
