//! Payouts (B2C) on the dashboard: `GET /admin/payouts` (the list with a state filter, and a
//! form to pay someone), `POST /admin/payouts`, `GET /admin/payouts/{id}` (its story: the
//! request, each approval, the B2C request and its result, every Transaction Status question),
//! `POST /admin/payouts/{id}/approve` and `/reject`, `/settle` (a person records the outcome
//! of a payout held for them: paid with its receipt, or not paid, with a note) and
//! `/acknowledge` (a person closes the matter when M-Pesa contradicted that outcome).
//!
//! Only translation: the guardrails (limits, approval by an admin other than the one who
//! asked, the audit trail with each admin's name) are [`crate::money_out::Payouts`]'.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use mpesa_domain::Msisdn;
use mpesa_storage::{MoneyOutEvent, PageRequest, Payout, PayoutFilter, PayoutStatus};
use serde_json::{Value, json};

use crate::admin::csrf::ActionForm;
use crate::admin::error::AdminError;
use crate::admin::format;
use crate::admin::layout::{self, Layout, Section};
use crate::admin::pages::payment::Entry;
use crate::admin::pages::render;
use crate::admin::pages::{Choice, Fact, choices, facts, path_segment};
use crate::admin::params::{Fields, Params, query_string};
use crate::admin::session::Admin;
use crate::ids::{random_token, sha256_hex};
use crate::money_out::payouts::PayoutCreated;
use crate::money_out::{HandOutcome, Hold, PayoutError, PayoutPurpose, PayoutRequest, Requester};
use crate::state::AppState;

const PAGE_SIZE: u32 = 50;
const MAX_NOTE_CHARS: usize = 500;

impl From<PayoutError> for AdminError {
    fn from(e: PayoutError) -> Self {
        match e {
            PayoutError::Storage(s) => s.into(),
            PayoutError::NotFound => AdminError::NotFound("There is no such payout."),
            PayoutError::Invalid { message, .. } => AdminError::BadRequest(message),
            PayoutError::Refused(m) => AdminError::BadRequest(m),
            other => AdminError::BadRequest(other.to_string()),
        }
    }
}

pub fn payout_href(id: &str) -> String {
    format!("/admin/payouts/{}", path_segment(id))
}

/// `admin:amina` → `amina (dashboard)`; `api:shop` → `API key shop`.
pub fn who(name: &str) -> String {
    match name.split_once(':') {
        Some(("admin", user)) => format!("{user} (dashboard)"),
        Some(("api", key)) => format!("API key {key}"),
        _ => name.to_owned(),
    }
}

pub struct PayoutRow {
    pub href: String,
    pub created: String,
    pub created_machine: String,
    pub status: String,
    pub badge: String,
    pub amount: String,
    pub phone: String,
    pub purpose: String,
    pub remarks: String,
    pub requested_by: String,
}

impl From<&Payout> for PayoutRow {
    fn from(p: &Payout) -> Self {
        PayoutRow {
            href: payout_href(&p.id),
            created: format::when(p.created_at),
            created_machine: format::machine_time(p.created_at),
            status: format::label(p.status.as_str()),
            badge: format::badge_class(p.status.as_str()),
            amount: format::money(p.amount),
            phone: p.phone.clone(),
            purpose: format::label(PayoutPurpose::from_command(&p.command).as_str()),
            remarks: p.remarks.clone(),
            requested_by: who(&p.requested_by),
        }
    }
}

/// What the create form had, to show again with its error.
#[derive(Default)]
pub struct PayoutForm {
    pub phone: String,
    pub amount: String,
    pub purpose: String,
    pub remarks: String,
    pub occasion: String,
}

#[derive(Template)]
#[template(path = "admin/payouts.html")]
struct PayoutsPage {
    layout: Layout,
    rows: Vec<PayoutRow>,
    statuses: Vec<Choice>,
    next_href: String,
    /// Why payouts are off, when they are (then there is no form).
    disabled: Option<String>,
    limits: String,
    form: PayoutForm,
    error: Option<String>,
    /// This form's Idempotency-Key: a second click answers with the first payout.
    form_key: String,
}

async fn list_page(
    state: &AppState,
    admin: &Admin,
    status: Option<PayoutStatus>,
    cursor: Option<String>,
) -> Result<PayoutsPage, AdminError> {
    let payouts = &state.money_out.payouts;
    let page = payouts
        .reads()
        .list(
            &PayoutFilter {
                status,
                phone: None,
            },
            &PageRequest {
                limit: PAGE_SIZE,
                cursor,
            },
        )
        .await?;
    let settings = payouts.settings();
    let mut limits = vec![format!(
        "At most {} a payout",
        format::money(settings.payout_max_amount)
    )];
    if let Some(day) = settings.payout_daily_limit {
        limits.push(format!("{} a day (East Africa Time)", format::money(day)));
    }
    if let Some(above) = settings.payout_approval_above {
        limits.push(format!(
            "above {} another admin approves",
            format::money(above)
        ));
    }
    let status_text = status.map(|s| s.as_str()).unwrap_or_default();
    Ok(PayoutsPage {
        layout: Layout::new("Payouts", Section::Payouts, &admin.session),
        rows: page.items.iter().map(PayoutRow::from).collect(),
        statuses: choices(
            PayoutStatus::ALL.iter().map(|s| s.as_str()),
            status.map(|s| s.as_str()),
        ),
        next_href: page
            .next_cursor
            .map(|c| {
                format!(
                    "/admin/payouts?{}",
                    query_string([("status", status_text), ("cursor", c.as_str())])
                )
            })
            .unwrap_or_default(),
        disabled: (!payouts.enabled()).then(|| PayoutError::Disabled.to_string()),
        limits: format!("{}.", limits.join("; ")),
        form: PayoutForm {
            purpose: "business".into(),
            ..PayoutForm::default()
        },
        error: None,
        form_key: random_token(24),
    })
}

pub async fn list(
    State(state): State<AppState>,
    admin: Admin,
    Params(params): Params,
) -> Result<Response, AdminError> {
    let status = match params.get("status") {
        Some(s) => Some(PayoutStatus::parse(s).ok_or_else(|| {
            AdminError::BadRequest("State: choose one of the listed states.".into())
        })?),
        None => None,
    };
    let cursor = params
        .get("cursor")
        .filter(|c| c.len() <= 200)
        .map(str::to_owned);
    let mut page = list_page(&state, &admin, status, cursor).await?;
    page.layout = page
        .layout
        .with_notice(layout::notice(params.get("notice")));
    render(&page)
}

/// Reads the create form: the request, or a message naming the field.
fn read_form(f: &Fields) -> (PayoutForm, Result<PayoutRequest, String>) {
    let text = |name: &str| f.raw(name).map(str::trim).unwrap_or_default().to_owned();
    let form = PayoutForm {
        phone: text("phone"),
        amount: text("amount"),
        purpose: text("purpose"),
        remarks: text("remarks"),
        occasion: text("occasion"),
    };
    let parsed = (|| {
        for (name, label) in [
            ("phone", "Phone"),
            ("amount", "Amount"),
            ("remarks", "Remarks"),
            ("occasion", "Occasion"),
        ] {
            f.text(name, label)?;
        }
        let phone = Msisdn::parse(&form.phone).map_err(|e| format!("Phone: {e}."))?;
        let amount: i64 = form
            .amount
            .replace(',', "")
            .parse()
            .map_err(|_| "Amount: a whole number of shillings.".to_owned())?;
        let purpose = PayoutPurpose::parse(&form.purpose)
            .ok_or_else(|| "Purpose: choose business, salary or promotion.".to_owned())?;
        Ok(PayoutRequest {
            phone,
            amount,
            purpose,
            remarks: form.remarks.clone(),
            occasion: Some(form.occasion.clone()).filter(|o| !o.is_empty()),
        })
    })();
    (form, parsed)
}

pub async fn create(
    State(state): State<AppState>,
    form: ActionForm,
) -> Result<Response, AdminError> {
    let username = form.admin.session.username.clone();
    let (entered, parsed) = read_form(&form.fields);
    let refused = match parsed {
        Err(message) => (StatusCode::BAD_REQUEST, message),
        Ok(request) => {
            let claim = form
                .fields
                .get("form_key")
                .filter(|k| k.len() <= 64)
                .map(|k| {
                    let canonical = json!({
                        "payout_to": request.phone.as_str(),
                        "amount": request.amount,
                        "purpose": request.purpose.as_str(),
                        "remarks": request.remarks.trim(),
                        "occasion": request.occasion.as_deref().map(str::trim),
                    });
                    (k.to_owned(), sha256_hex(canonical.to_string()))
                });
            match state
                .money_out
                .payouts
                .create(request, &Requester::admin(&username), claim)
                .await
            {
                Ok(PayoutCreated::Created(p)) => {
                    tracing::info!(payout_id = %p.id, %username, status = p.status.as_str(), "payout created from the dashboard");
                    let notice = if p.status == PayoutStatus::AwaitingApproval {
                        "payout_waits"
                    } else {
                        "payout_sent"
                    };
                    return Ok(
                        Redirect::to(&format!("{}?notice={notice}", payout_href(&p.id)))
                            .into_response(),
                    );
                }
                // The same form sent twice (a double click): the first payout stands.
                Err(PayoutError::InProgress { id }) => {
                    return Ok(Redirect::to(&payout_href(&id)).into_response());
                }
                Ok(PayoutCreated::Replay(_)) => {
                    return Ok(Redirect::to("/admin/payouts").into_response());
                }
                Err(PayoutError::KeyReused) => (
                    StatusCode::CONFLICT,
                    "This form was already sent with other values: nothing more was paid. Check the list below.".into(),
                ),
                Err(PayoutError::Invalid { field, message }) => (
                    StatusCode::BAD_REQUEST,
                    format!("{}: {message}.", format::label(field)),
                ),
                Err(PayoutError::Disabled) => {
                    (StatusCode::CONFLICT, PayoutError::Disabled.to_string())
                }
                Err(other) => return Err(other.into()),
            }
        }
    };
    let (status, message) = refused;
    let mut page = list_page(&state, &form.admin, None, None).await?;
    page.error = Some(message);
    page.form = entered;
    let mut response = render(&page)?;
    *response.status_mut() = status;
    Ok(response)
}

#[derive(Template)]
#[template(path = "admin/payout.html")]
struct PayoutPage {
    layout: Layout,
    id: String,
    status: String,
    badge: String,
    amount: String,
    phone: String,
    facts: Vec<Fact>,
    outcome: Vec<Fact>,
    timeline: Vec<Entry>,
    awaiting: bool,
    /// The signed-in admin asked for it: they cannot approve it.
    own: bool,
    approve_action: String,
    reject_action: String,
    /// Pending and held for a person: the "Record the outcome" form (not for its requester).
    held: bool,
    /// Held for a person after it was final (M-Pesa contradicted what a person recorded): the
    /// "Acknowledge" form.
    contradicted: bool,
    /// Final and held for another reason: no form, acknowledging would be refused.
    held_final: bool,
    settle_action: String,
    acknowledge_action: String,
    error: Option<String>,
}

async fn payout_page(state: &AppState, admin: &Admin, id: &str) -> Result<PayoutPage, AdminError> {
    let payouts = state.money_out.payouts.reads();
    let p = payouts.get(id).await?;
    let view = payouts.view(id).await?;
    // The story: the payout's own entries, its B2C request's, and each Transaction Status
    // question asked about that request.
    let events = payouts.story(&p).await?;
    let hold = payouts.hold(&p).await?;
    let me = Requester::admin(&admin.session.username).name;
    let own = payouts.asked_by(&p).await?.as_ref() == Some(&me);
    let mut timeline: Vec<Entry> = events.iter().map(|(e, whose)| entry(e, whose)).collect();
    timeline.sort_by_key(|e| (e.at, e.order));
    Ok(PayoutPage {
        layout: Layout::new(
            format!("Payout {}", format::money(p.amount)),
            Section::Payouts,
            &admin.session,
        ),
        id: p.id.clone(),
        status: format::label(p.status.as_str()),
        badge: format::badge_class(p.status.as_str()),
        amount: format::money(p.amount),
        phone: p.phone.clone(),
        facts: facts(vec![
            ("Payout id", Some(p.id.clone()), true),
            ("Phone", Some(p.phone.clone()), true),
            ("Amount", Some(format::money(p.amount)), false),
            (
                "Purpose",
                Some(format!("{} ({})", format::label(&view.purpose), p.command)),
                false,
            ),
            ("Remarks", Some(p.remarks.clone()), false),
            ("Occasion", p.occasion.clone(), false),
            ("Requested by", Some(who(&p.requested_by)), false),
            ("Requested", Some(format::when_precise(p.created_at)), false),
            ("Decided by", p.decided_by.as_deref().map(who), false),
            ("Decided", p.decided_at.map(format::when_precise), false),
            ("Note", p.decision_note.clone(), false),
        ]),
        outcome: facts(vec![
            ("M-Pesa receipt", p.receipt.clone(), true),
            (
                "Recipient (as Safaricom gives it)",
                p.recipient_name.clone(),
                false,
            ),
            (
                "Result",
                p.result_code
                    .as_ref()
                    .map(|c| format!("{c}: {}", p.result_desc.as_deref().unwrap_or_default())),
                false,
            ),
            (
                "B2C account after it",
                p.utility_balance_cents.map(cents),
                false,
            ),
            (
                "Daraja request",
                view.request_status.map(|s| format::label(&s)),
                false,
            ),
            (
                "Final since",
                p.finalized_at.map(format::when_precise),
                false,
            ),
        ]),
        timeline,
        awaiting: p.status == PayoutStatus::AwaitingApproval,
        own,
        approve_action: format!("{}/approve", payout_href(&p.id)),
        reject_action: format!("{}/reject", payout_href(&p.id)),
        held: hold == Hold::Open && p.status == PayoutStatus::Pending,
        contradicted: hold == Hold::Contradicted,
        held_final: hold == Hold::Final,
        settle_action: format!("{}/settle", payout_href(&p.id)),
        acknowledge_action: format!("{}/acknowledge", payout_href(&p.id)),
        error: None,
    })
}

/// `KSh 12,345.50` from cents.
pub fn cents(c: i64) -> String {
    let shillings = format::money(c.div_euclid(100));
    match c.rem_euclid(100) {
        0 => shillings,
        r => format!("{shillings}.{r:02}"),
    }
}

fn entry(e: &MoneyOutEvent, whose: &str) -> Entry {
    let detail: Value = serde_json::from_str(&e.detail).unwrap_or_default();
    let text = |key: &str| detail.get(key).and_then(|v| v.as_str()).map(str::to_owned);
    let (class, title) = match (whose, e.kind.as_str()) {
        ("payout", "requested") => ("t-admin", "Payout requested".to_owned()),
        ("payout", "approved") => ("t-admin", "Approved".to_owned()),
        ("payout", "rejected") => ("t-admin", "Rejected".to_owned()),
        ("payout", "sent") => ("t-daraja", "B2C request sent to M-Pesa (once)".to_owned()),
        ("payout", "completed") => ("t-daraja", "Paid".to_owned()),
        ("payout", "failed") => ("t-problem", "Failed".to_owned()),
        ("request", "stored") => ("", "B2C request stored before sending".to_owned()),
        ("request", "status_asked") => ("t-daraja", "Transaction Status asked".to_owned()),
        ("status", "stored") => ("", "Transaction Status question stored".to_owned()),
        ("status", kind) => (
            "t-daraja",
            format!("Transaction Status: {}", format::label(kind)),
        ),
        (_, "accepted") => ("t-daraja", "Daraja accepted the request".to_owned()),
        (_, "refused") => ("t-problem", "Daraja refused the request".to_owned()),
        (_, "send_unknown") => (
            "t-problem",
            "No answer to the request (not sent again; Transaction Status will ask)".to_owned(),
        ),
        (_, "result") => ("t-callback", "Result received".to_owned()),
        (_, "queue_timeout") => ("t-problem", "Queue timeout notice".to_owned()),
        (_, "status_found") => (
            "t-daraja",
            "Transaction Status found the outcome".to_owned(),
        ),
        (_, "held_for_review") | (_, "status_not_settling") => {
            ("t-problem", "Needs a person".to_owned())
        }
        (_, "settled_by_hand") => ("t-admin", "Outcome recorded by hand".to_owned()),
        (_, "settled_by_late_answer") => (
            "t-daraja",
            "Transaction Status answered after the hold: settled by M-Pesa's answer".to_owned(),
        ),
        (_, "contradicted") => (
            "t-problem",
            "M-Pesa contradicts the outcome recorded by hand: needs a person".to_owned(),
        ),
        ("payout", "acknowledged") => (
            "t-admin",
            "Contradiction acknowledged: no longer held".to_owned(),
        ),
        (_, "acknowledged") => ("t-admin", "Hold lifted by a person".to_owned()),
        (_, "receipt_in_use") => (
            "t-problem",
            "M-Pesa's answer brings a receipt recorded by hand on another request: needs a person"
                .to_owned(),
        ),
        (_, kind) => ("", format::label(kind)),
    };
    let order = match whose {
        "payout" => 1,
        "request" => 2,
        _ => 3,
    };
    let mut entry = Entry::new(e.occurred_at, order, class, title);
    entry.summary = match (e.kind.as_str(), text("result_code"), text("result_desc")) {
        ("contradicted" | "settled_by_late_answer" | "receipt_in_use", _, _) => {
            text("note").unwrap_or_default()
        }
        (_, Some(code), Some(desc)) => format!("Result {code}: {desc}"),
        // Recorded by a person: who, what they saw, and their note.
        (_, _, _) if text("by").is_some() && text("note").is_some() => {
            let by = who(&text("by").unwrap_or_default());
            let note = text("note").unwrap_or_default();
            match text("receipt") {
                Some(receipt) => format!("By {by}, receipt {receipt}: {note}"),
                None => format!("By {by}: {note}"),
            }
        }
        ("requested", _, _) => format!(
            "By {}.",
            who(&text("requested_by").unwrap_or_else(|| "someone".into()))
        ),
        ("approved", _, _) => format!("By {}.", who(&text("by").unwrap_or_default())),
        ("rejected", _, _) => format!(
            "By {}: {}",
            who(&text("by").unwrap_or_default()),
            text("note").unwrap_or_default()
        ),
        _ => text("error").unwrap_or_default(),
    };
    entry.body = format::pretty_json(&e.detail);
    entry
}

pub async fn show(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
    Params(params): Params,
) -> Result<Response, AdminError> {
    let mut page = payout_page(&state, &admin, &id).await?;
    page.layout = page
        .layout
        .with_notice(layout::notice(params.get("notice")));
    render(&page)
}

/// The payout's page again, with why the action was refused (409).
async fn refused(
    state: &AppState,
    admin: &Admin,
    id: &str,
    message: String,
) -> Result<Response, AdminError> {
    with_error(state, admin, id, StatusCode::CONFLICT, message).await
}

/// The payout's page again, with `message` at the top, answered with `status`.
async fn with_error(
    state: &AppState,
    admin: &Admin,
    id: &str,
    status: StatusCode,
    message: String,
) -> Result<Response, AdminError> {
    let mut page = payout_page(state, admin, id).await?;
    page.error = Some(message);
    let mut response = render(&page)?;
    *response.status_mut() = status;
    Ok(response)
}

/// The payout's page again, saying which field of the form was wrong (400): `not_done` is
/// "Not recorded"….
async fn invalid_field(
    state: &AppState,
    admin: &Admin,
    id: &str,
    not_done: &str,
    field: &str,
    message: &str,
) -> Result<Response, AdminError> {
    let message = format!("{not_done}: {}: {message}.", format::label(field));
    with_error(state, admin, id, StatusCode::BAD_REQUEST, message).await
}

pub async fn approve(
    State(state): State<AppState>,
    Path(id): Path<String>,
    form: ActionForm,
) -> Result<Response, AdminError> {
    let username = form.admin.session.username.clone();
    match state.money_out.payouts.approve(&id, &username).await {
        Ok(p) => {
            tracing::info!(payout_id = %p.id, %username, "payout approved from the dashboard");
            Ok(
                Redirect::to(&format!("{}?notice=payout_approved", payout_href(&p.id)))
                    .into_response(),
            )
        }
        Err(PayoutError::Refused(why)) => {
            tracing::info!(payout_id = %id, %username, %why, "payout approval refused");
            refused(&state, &form.admin, &id, format!("Not approved: {why}.")).await
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn reject(
    State(state): State<AppState>,
    Path(id): Path<String>,
    form: ActionForm,
) -> Result<Response, AdminError> {
    let username = form.admin.session.username.clone();
    let note = form.fields.get("note").unwrap_or_default().to_owned();
    if note.is_empty() {
        return refused(
            &state,
            &form.admin,
            &id,
            "Write a note saying why before rejecting.".into(),
        )
        .await;
    }
    if note.chars().count() > MAX_NOTE_CHARS {
        return Err(AdminError::BadRequest(format!(
            "The note is too long (at most {MAX_NOTE_CHARS} characters)."
        )));
    }
    match state.money_out.payouts.reject(&id, &username, &note).await {
        Ok(p) => {
            tracing::info!(payout_id = %p.id, %username, "payout rejected from the dashboard");
            Ok(
                Redirect::to(&format!("{}?notice=payout_rejected", payout_href(&p.id)))
                    .into_response(),
            )
        }
        Err(PayoutError::Refused(why)) => {
            refused(&state, &form.admin, &id, format!("Not rejected: {why}.")).await
        }
        Err(e) => Err(e.into()),
    }
}

/// `POST /admin/payouts/{id}/settle`: a person records the outcome of a payout held for them.
pub async fn settle(
    State(state): State<AppState>,
    Path(id): Path<String>,
    form: ActionForm,
) -> Result<Response, AdminError> {
    let username = form.admin.session.username.clone();
    let note = form.fields.get("note").unwrap_or_default().to_owned();
    let outcome = match form.fields.get("outcome") {
        Some("completed") => HandOutcome::Completed {
            receipt: form.fields.get("receipt").unwrap_or_default().to_owned(),
        },
        Some("failed") => HandOutcome::Failed,
        _ => {
            return refused(
                &state,
                &form.admin,
                &id,
                "Choose what happened: paid or not paid.".into(),
            )
            .await;
        }
    };
    match state
        .money_out
        .payouts
        .settle_by_hand(&id, outcome, &note, &username)
        .await
    {
        Ok(p) => {
            tracing::info!(payout_id = %p.id, %username, status = p.status.as_str(), "payout settled by hand from the dashboard");
            Ok(
                Redirect::to(&format!("{}?notice=payout_settled", payout_href(&p.id)))
                    .into_response(),
            )
        }
        Err(PayoutError::Refused(why)) => {
            tracing::info!(payout_id = %id, %username, %why, "settling a payout by hand refused");
            refused(&state, &form.admin, &id, format!("Not recorded: {why}.")).await
        }
        Err(PayoutError::Invalid { field, message }) => {
            invalid_field(&state, &form.admin, &id, "Not recorded", field, &message).await
        }
        Err(e) => Err(e.into()),
    }
}

/// `POST /admin/payouts/{id}/acknowledge`: a person acknowledges, with a note, that M-Pesa
/// contradicts the outcome recorded by hand; the payout is no longer held.
pub async fn acknowledge(
    State(state): State<AppState>,
    Path(id): Path<String>,
    form: ActionForm,
) -> Result<Response, AdminError> {
    let username = form.admin.session.username.clone();
    let note = form.fields.get("note").unwrap_or_default().to_owned();
    match state
        .money_out
        .payouts
        .acknowledge(&id, &note, &username)
        .await
    {
        Ok(p) => {
            tracing::info!(payout_id = %p.id, %username, "contradiction acknowledged from the dashboard");
            Ok(Redirect::to(&format!(
                "{}?notice=payout_acknowledged",
                payout_href(&p.id)
            ))
            .into_response())
        }
        Err(PayoutError::Refused(why)) => {
            tracing::info!(payout_id = %id, %username, %why, "acknowledging a contradiction refused");
            refused(
                &state,
                &form.admin,
                &id,
                format!("Not acknowledged: {why}."),
            )
            .await
        }
        Err(PayoutError::Invalid { field, message }) => {
            invalid_field(
                &state,
                &form.admin,
                &id,
                "Not acknowledged",
                field,
                &message,
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_becomes_a_request_or_names_the_field() {
        let (_, r) = read_form(&Fields::parse(
            b"phone=0708+374+149&amount=1%2C500&purpose=salary&remarks=March&occasion=",
        ));
        let r = r.unwrap();
        assert_eq!(r.phone.as_str(), "254708374149");
        assert_eq!(r.amount, 1500);
        assert_eq!(r.purpose, PayoutPurpose::Salary);
        assert_eq!(r.occasion, None);
        let (form, r) = read_form(&Fields::parse(b"phone=07&amount=5&purpose=business"));
        assert!(r.unwrap_err().starts_with("Phone:"));
        assert_eq!(form.phone, "07");
        let (_, r) = read_form(&Fields::parse(
            b"phone=0708374149&amount=lots&purpose=business",
        ));
        assert!(r.unwrap_err().starts_with("Amount:"));
        let (_, r) = read_form(&Fields::parse(b"phone=0708374149&amount=50&purpose=gift"));
        assert!(r.unwrap_err().starts_with("Purpose:"));
    }

    #[test]
    fn people_and_cents_read_well() {
        assert_eq!(who("admin:amina"), "amina (dashboard)");
        assert_eq!(who("api:shop"), "API key shop");
        assert_eq!(cents(123_456), "KSh 1,234.56");
        assert_eq!(cents(100_000), "KSh 1,000");
    }
}
