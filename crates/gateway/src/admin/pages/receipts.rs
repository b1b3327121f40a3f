//! Checking a receipt with Safaricom from the dashboard (Transaction Status).
//!
//! `POST /admin/receipts/check` (the payments page's "Check a receipt" form, CSRF-checked) asks
//! through the receipt-check service and shows the check's page; `GET /admin/receipts/{code}`
//! shows what Safaricom said about the code (the latest check) and the payment it belongs to.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};

use crate::admin::csrf::ActionForm;
use crate::admin::error::AdminError;
use crate::admin::format;
use crate::admin::layout::{self, Layout, Section};
use crate::admin::pages::render;
use crate::admin::pages::{Fact, PaymentRow, facts, path_segment};
use crate::admin::params::Params;
use crate::admin::session::Admin;
use crate::http::receipts::ReceiptCheckView;
use crate::money_out::receipts::parse_typed_code;
use crate::money_out::{ReceiptError, Requester};
use crate::state::AppState;

fn page_href(code: &str) -> String {
    format!("/admin/receipts/{}", path_segment(code))
}

impl From<ReceiptError> for AdminError {
    fn from(e: ReceiptError) -> Self {
        match e {
            ReceiptError::Storage(s) => s.into(),
            ReceiptError::Invalid(why) => AdminError::BadRequest(format!(
                "That is not an M-Pesa receipt: {why}."
            )),
            ReceiptError::NotConfigured => AdminError::BadRequest(
                "Checking a receipt needs the initiator (Transaction Status is an initiator API): set MPESA_INITIATOR_NAME and MPESA_INITIATOR_PASSWORD.".into(),
            ),
            ReceiptError::NotFound => {
                AdminError::NotFound("This receipt has not been checked yet.")
            }
        }
    }
}

/// `POST /admin/receipts/check`: asks Safaricom, then shows the check.
pub async fn check(
    State(state): State<AppState>,
    form: ActionForm,
) -> Result<Response, AdminError> {
    let typed = form.fields.get("code").unwrap_or_default();
    let code = parse_typed_code(typed)?;
    let username = &form.admin.session.username;
    let check = state
        .money_out
        .receipts
        .check(&code, &Requester::admin(username), None)
        .await?;
    tracing::info!(check_id = %check.id, %username, "receipt check from the dashboard");
    Ok(Redirect::to(&format!("{}?notice=receipt_asked", page_href(&code))).into_response())
}

#[derive(Template)]
#[template(path = "admin/receipt.html")]
struct ReceiptPage {
    layout: Layout,
    code: String,
    status: String,
    badge: String,
    pending: bool,
    summary: String,
    facts: Vec<Fact>,
    rows: Vec<PaymentRow>,
    self_href: String,
}

/// What the gateway made of the answer, in a sentence.
fn summary(v: &ReceiptCheckView) -> String {
    match (v.status.as_str(), v.finding.as_deref(), v.outcome.as_deref()) {
        ("pending", _, _) => "Safaricom has been asked; its answer has not come yet. Refresh this page in a few seconds.".into(),
        (_, Some("completed"), Some("booked")) => "Safaricom confirms this payment to our paybill or till. Its confirmation never came, so it was recorded now (recovered by Transaction Status).".into(),
        (_, Some("completed"), Some("already_booked")) => "Safaricom confirms this payment, and it was already recorded.".into(),
        (_, Some("completed"), Some("other_short_code")) => "Safaricom knows this payment, but it was paid to another shortcode: it is not ours and was not recorded.".into(),
        (_, Some("completed"), Some("awaiting_stk")) => "Safaricom confirms this payment; an open STK payment could be this one, so it is recorded when that one settles.".into(),
        (_, Some("reversed"), _) => "Safaricom says this payment was reversed: it is not recorded as a payment.".into(),
        (_, Some("not_found"), _) => "Safaricom does not know this receipt.".into(),
        (_, Some(_), _) => "Safaricom answered, but not with a completed payment: nothing was recorded.".into(),
        _ => "Safaricom did not answer (the request was refused or expired). Check again later.".into(),
    }
}

/// `GET /admin/receipts/{code}`: the latest check of the code.
pub async fn show(
    State(state): State<AppState>,
    admin: Admin,
    Path(code): Path<String>,
    Params(params): Params,
) -> Result<Response, AdminError> {
    let code =
        parse_typed_code(&code).map_err(|_| AdminError::NotFound("There is no such receipt."))?;
    let answer = state.money_out.receipts.latest(&code).await?;
    let v = ReceiptCheckView::of(&answer);
    let paid_at_ms = answer
        .check
        .details
        .as_deref()
        .and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .and_then(|d| d["paid_at_ms"].as_i64());
    let page = ReceiptPage {
        layout: Layout::new(format!("Receipt {code}"), Section::Payments, &admin.session)
            .with_notice(layout::notice(params.get("notice"))),
        code: code.clone(),
        status: format::label(&v.status),
        badge: format::badge_class(&v.status),
        pending: v.status == "pending",
        summary: summary(&v),
        facts: facts(vec![
            ("Safaricom says", v.transaction_status.clone(), false),
            ("Finding", v.finding.as_deref().map(format::label), false),
            ("Amount", v.amount.map(|a| format!("KSh {a:.2}")), false),
            ("Paid by", v.payer_name.clone(), false),
            ("Payer's number", v.payer_msisdn.clone(), true),
            ("Paid at", paid_at_ms.map(format::when), false),
            ("Paid to shortcode", v.short_code.clone(), true),
            ("Why not recorded", v.note.clone(), false),
            ("Result code", v.result_code.clone(), true),
            ("Result", v.result_desc.clone(), false),
            ("Asked by", Some(v.requested_by.clone()), false),
            (
                "Asked at",
                Some(format::when(answer.check.created_at)),
                false,
            ),
            (
                "Answered at",
                answer.check.finalized_at.map(format::when),
                false,
            ),
            ("Check", Some(v.id.clone()), true),
        ]),
        rows: answer.payment.iter().map(PaymentRow::from).collect(),
        self_href: page_href(&code),
    };
    render(&page)
}
