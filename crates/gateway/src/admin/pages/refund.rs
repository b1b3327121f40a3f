//! The **Refund** button of a completed payment: `GET /admin/payments/{id}/refund` is a
//! confirmation page that shows the amount (M-Pesa reverses the whole payment) and asks why;
//! `POST` asks [`crate::money_out::Refunds::request`] and goes back to the payment, whose page
//! then shows the refund's status. A payment that cannot be refunded (not completed, refunded
//! already, a refund in flight) gets the reason instead of the form. A refund in flight that is
//! held for a person (M-Pesa never answered; Transaction Status found nothing) gets the "Record
//! the outcome" form instead: `POST /admin/payments/{id}/refund/settle`. A final refund held
//! because M-Pesa contradicted the outcome recorded by hand gets the "Acknowledge" form:
//! `POST /admin/payments/{id}/refund/acknowledge`.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use mpesa_storage::{Payment, Refund};

use crate::admin::csrf::ActionForm;
use crate::admin::error::AdminError;
use crate::admin::format;
use crate::admin::layout::{Layout, Section};
use crate::admin::pages::payment::active_refund;
use crate::admin::pages::render;
use crate::admin::pages::{Fact, facts, payment_href};
use crate::admin::session::Admin;
use crate::ids::{random_token, sha256_hex};
use crate::money_out::refunds::{RefundCreated, refund_refusal};
use crate::money_out::{HandOutcome, Hold, RefundError, Requester};
use crate::state::AppState;
use mpesa_storage::RefundRefusal;
use serde_json::json;

impl From<RefundError> for AdminError {
    fn from(e: RefundError) -> Self {
        match e {
            RefundError::Storage(s) => s.into(),
            RefundError::PaymentNotFound => AdminError::NotFound("There is no such payment."),
            RefundError::NotFound => AdminError::NotFound("There is no such refund."),
            RefundError::Invalid(m) | RefundError::Refused(m) => AdminError::BadRequest(m),
            other => AdminError::Internal(other.to_string()),
        }
    }
}

#[derive(Template)]
#[template(path = "admin/refund.html")]
struct RefundPage {
    layout: Layout,
    amount: String,
    payment_href: String,
    action: String,
    facts: Vec<Fact>,
    /// Why this payment cannot be refunded (then there is no form).
    refused: Option<String>,
    /// What was wrong with the form just sent.
    error: Option<String>,
    reason: String,
    /// This form's Idempotency-Key: a second click answers with the first refund.
    form_key: String,
    /// The refund in flight that is held for a person: its id (then the outcome form shows, but
    /// to the admin who asked for it).
    held: Option<String>,
    /// This admin asked for the held refund: another must record its outcome.
    own: bool,
    settle_action: String,
    /// The final refund held because M-Pesa contradicts the outcome recorded by hand: its id
    /// (then the "Acknowledge" form shows).
    contradicted: Option<String>,
    acknowledge_action: String,
}

async fn page(
    state: &AppState,
    admin: &Admin,
    id: &str,
) -> Result<(RefundPage, Payment), AdminError> {
    let Some(p) = state.payments.reads().find(id).await? else {
        return Err(AdminError::NotFound("There is no such payment."));
    };
    let refunds = state.money_out.refunds.of_payment(id).await?;
    let held = match active_refund(&refunds)
        .filter(|r| r.status == mpesa_storage::RefundStatus::Pending)
    {
        Some(r) => state
            .money_out
            .refunds
            .view(r)
            .await?
            .needs_review
            .then_some(r),
        None => None,
    };
    // Offered only when acknowledging would be allowed (not for a refund held otherwise).
    let contradicted = match refunds.last() {
        Some(r) => {
            (state.money_out.refunds.hold(r).await? == Hold::Contradicted).then(|| r.id.clone())
        }
        None => None,
    };
    let me = Requester::admin(&admin.session.username).name;
    let own = match held {
        Some(r) => state.money_out.refunds.asked_by(r).await?.as_ref() == Some(&me),
        None => false,
    };
    let held = held.map(|r| r.id.clone());
    let refused = if !state.money_out.initiator.configured() {
        Some(RefundError::NotConfigured.to_string())
    } else {
        refund_refusal(&p, active_refund(&refunds)).map(|r| match r {
            RefundRefusal::NotRefundable(why) => why,
            RefundRefusal::AlreadyRefunded {
                refund_id,
                status: mpesa_storage::RefundStatus::Completed,
            } => {
                format!("the payment is already refunded ({refund_id})")
            }
            RefundRefusal::AlreadyRefunded { refund_id, .. } => {
                format!("a refund of this payment is in flight ({refund_id})")
            }
            RefundRefusal::PaymentNotFound => "there is no such payment".into(),
        })
    };
    let amount = format::money(p.amount.shillings());
    let page = RefundPage {
        layout: Layout::new(
            format!("Refund {amount}"),
            Section::Payments,
            &admin.session,
        ),
        amount,
        payment_href: payment_href(&p.id),
        action: format!("{}/refund", payment_href(&p.id)),
        facts: facts(vec![
            ("Payment id", Some(p.id.clone()), true),
            ("Paid by", Some(p.payer()), true),
            ("Account / reference", Some(p.reference.clone()), true),
            ("M-Pesa receipt", p.mpesa_receipt_number.clone(), true),
            ("Paid", p.finalized_at.map(format::when_precise), false),
        ]),
        refused: refused.map(|why| sentence(&why)),
        error: None,
        reason: String::new(),
        form_key: random_token(24),
        held,
        own,
        settle_action: format!("{}/refund/settle", payment_href(&p.id)),
        contradicted,
        acknowledge_action: format!("{}/refund/acknowledge", payment_href(&p.id)),
    };
    Ok((page, p))
}

/// `only a completed payment…` → `Only a completed payment….`
fn sentence(text: &str) -> String {
    let mut chars = text.chars();
    let mut s: String = match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    };
    if !s.ends_with('.') {
        s.push('.');
    }
    s
}

pub async fn confirm(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Response, AdminError> {
    let (page, _) = page(&state, &admin, &id).await?;
    render(&page)
}

pub async fn request(
    State(state): State<AppState>,
    Path(id): Path<String>,
    form: ActionForm,
) -> Result<Response, AdminError> {
    let username = form.admin.session.username.clone();
    let reason = form
        .fields
        .text("reason", "Reason")
        .map_err(AdminError::BadRequest)?
        .unwrap_or_default();
    let claim = form
        .fields
        .get("form_key")
        .filter(|k| k.len() <= 64)
        .map(|k| {
            let canonical = json!({ "refund_of": id, "reason": reason.trim() });
            (k.to_owned(), sha256_hex(canonical.to_string()))
        });
    let answer = state
        .money_out
        .refunds
        .request(&id, &reason, &Requester::admin(&username), claim)
        .await;
    let (status, message) = match answer {
        Ok(RefundCreated::Created(r)) => {
            tracing::info!(refund_id = %r.id, payment_id = %id, %username, "refund requested from the dashboard");
            return Ok(
                Redirect::to(&format!("{}?notice=refund_requested", payment_href(&id)))
                    .into_response(),
            );
        }
        // The same form sent twice (a double click): the first refund stands.
        Ok(RefundCreated::Replay(_)) | Err(RefundError::InProgress { .. }) => {
            return Ok(
                Redirect::to(&format!("{}?notice=refund_requested", payment_href(&id)))
                    .into_response(),
            );
        }
        Err(RefundError::KeyReused) => (
            StatusCode::CONFLICT,
            "this form was already sent with another reason: reload the page".into(),
        ),
        Err(RefundError::Invalid(m)) => (StatusCode::BAD_REQUEST, m),
        Err(RefundError::Refused(m)) => (StatusCode::CONFLICT, m),
        Err(RefundError::NotConfigured) => {
            (StatusCode::CONFLICT, RefundError::NotConfigured.to_string())
        }
        Err(other) => return Err(other.into()),
    };
    tracing::info!(payment_id = %id, %username, why = %message, "refund refused on the dashboard");
    let (mut page, _) = page(&state, &form.admin, &id).await?;
    page.error = Some(sentence(&message));
    page.reason = reason;
    let mut response = render(&page)?;
    *response.status_mut() = status;
    Ok(response)
}

/// `POST /admin/payments/{id}/refund/settle`: a person records the outcome of the payment's
/// refund that is held for them.
pub async fn settle(
    State(state): State<AppState>,
    Path(id): Path<String>,
    form: ActionForm,
) -> Result<Response, AdminError> {
    let username = form.admin.session.username.clone();
    let note = form.fields.get("note").unwrap_or_default().to_owned();
    let outcome = match form.fields.get("outcome") {
        Some("completed") => Some(HandOutcome::Completed {
            receipt: form.fields.get("receipt").unwrap_or_default().to_owned(),
        }),
        Some("failed") => Some(HandOutcome::Failed),
        _ => None,
    };
    let refunds = &state.money_out.refunds;
    let answer = match (outcome, active_refund(&refunds.of_payment(&id).await?)) {
        (None, _) => Err((
            StatusCode::BAD_REQUEST,
            "choose what happened: reversed or not reversed".to_owned(),
        )),
        (_, None) => Err((
            StatusCode::CONFLICT,
            "this payment has no refund in flight".to_owned(),
        )),
        (Some(outcome), Some(r)) => refusal(
            refunds
                .settle_by_hand(&r.id, outcome, &note, &username)
                .await,
        )?,
    };
    match answer {
        Ok(r) => {
            tracing::info!(refund_id = %r.id, payment_id = %id, %username, status = r.status.as_str(), "refund settled by hand from the dashboard");
            Ok(
                Redirect::to(&format!("{}?notice=refund_settled", payment_href(&id)))
                    .into_response(),
            )
        }
        Err((status, message)) => {
            tracing::info!(payment_id = %id, %username, why = %message, "settling a refund by hand refused");
            not_done(&state, &form.admin, &id, status, "Not recorded", &message).await
        }
    }
}

/// A person's action on a refund as the page answers it: done, or why not (400 for the form,
/// 409 for the refund's state); other errors are the error page's.
fn refusal(
    answer: Result<Refund, RefundError>,
) -> Result<Result<Refund, (StatusCode, String)>, AdminError> {
    match answer {
        Ok(r) => Ok(Ok(r)),
        Err(RefundError::Invalid(m)) => Ok(Err((StatusCode::BAD_REQUEST, m))),
        Err(RefundError::Refused(m)) => Ok(Err((StatusCode::CONFLICT, m))),
        Err(other) => Err(other.into()),
    }
}

/// The refund page again, saying why the person's action was not done (`what`: "Not
/// recorded"…), answered with `status`.
async fn not_done(
    state: &AppState,
    admin: &Admin,
    id: &str,
    status: StatusCode,
    what: &str,
    message: &str,
) -> Result<Response, AdminError> {
    let (mut page, _) = page(state, admin, id).await?;
    page.error = Some(format!("{what}: {}", sentence(message)));
    let mut response = render(&page)?;
    *response.status_mut() = status;
    Ok(response)
}

/// `POST /admin/payments/{id}/refund/acknowledge`: a person acknowledges, with a note, that
/// M-Pesa contradicts the outcome recorded by hand on the payment's latest refund; it is no
/// longer held.
pub async fn acknowledge(
    State(state): State<AppState>,
    Path(id): Path<String>,
    form: ActionForm,
) -> Result<Response, AdminError> {
    let username = form.admin.session.username.clone();
    let note = form.fields.get("note").unwrap_or_default().to_owned();
    let refunds = &state.money_out.refunds;
    let answer = match refunds.of_payment(&id).await?.last() {
        None => Err((
            StatusCode::CONFLICT,
            "this payment has no refund".to_owned(),
        )),
        Some(r) => refusal(refunds.acknowledge(&r.id, &note, &username).await)?,
    };
    match answer {
        Ok(r) => {
            tracing::info!(refund_id = %r.id, payment_id = %id, %username, "contradiction acknowledged from the dashboard");
            Ok(
                Redirect::to(&format!("{}?notice=refund_acknowledged", payment_href(&id)))
                    .into_response(),
            )
        }
        Err((status, message)) => {
            tracing::info!(payment_id = %id, %username, why = %message, "acknowledging a contradiction refused");
            not_done(
                &state,
                &form.admin,
                &id,
                status,
                "Not acknowledged",
                &message,
            )
            .await
        }
    }
}
