//! Checking a receipt code with Safaricom (Transaction Status), on the initiator layer.
//!
//! A check is stored (`pending`, in flight for its code: asking again returns the same check)
//! before its Transaction Status request is stored and sent once. Safaricom's answer (or the
//! queue-timeout notice, or no answer in time) makes the check final, once; a check that got no
//! answer takes Safaricom's answer if it comes after all (once, as an answer in time would):
//! - a completed customer payment to our C2B shortcode that we do not have is booked through the
//!   C2B booking path (`recovered_by: "status"`; one TransID settles once, whatever the path);
//! - a receipt we already have is linked to its payment;
//! - anything else (not found, another shortcode, a reversal) is shown and never booked.
//!
//! The Telegram chats that asked (`/paid CODE`) are told what was found through the outbox, in
//! the transaction that makes the check final.

use std::sync::Arc;

use async_trait::async_trait;
use mpesa_domain::c2b::{C2bReport, PayerMsisdn};
use mpesa_domain::{Cents, RequestStatus};
use mpesa_storage::{
    Channel, InitiatorRequest, NewMoneyOutEvent, NewOutboxEvent, NewReceiptCheck, Payment,
    ReceiptCheck, ReceiptCheckStatus, ReceiptCheckUpdate, Storage, StorageError,
};
use serde_json::{Value, json};

use super::Requester;
use super::initiator::{Ask, Initiator, InitiatorError, InitiatorOwner};
use super::notify::NOTICE_HTML;
use crate::clock::Clock;
use crate::ids::new_id;
use crate::outbox::message::ksh;
use crate::payments::c2b::{NotBooked, StatusBooking};
use crate::payments::{NotificationPlan, Payments};

pub const PURPOSE: &str = "receipt_check";

/// How long a check may be in flight without its Transaction Status request before it is taken
/// as abandoned (its instance stopped between the two) and a new one asks.
const UNASKED_AFTER_MS: i64 = 120_000;

/// The path pattern of a receipt code: exactly what [`parse_code`] accepts.
pub const CODE_PATTERN: &str = "^[A-Z0-9]{10}$";

#[derive(Debug, thiserror::Error)]
pub enum ReceiptError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("{0}")]
    Invalid(String),
    #[error(
        "checking a receipt needs the initiator: set MPESA_INITIATOR_NAME and MPESA_INITIATOR_PASSWORD (Transaction Status is an initiator API)"
    )]
    NotConfigured,
    #[error("this receipt has not been checked: POST /api/v1/receipts/{{code}}/check first")]
    NotFound,
}

/// A plausible M-Pesa receipt: 10 upper-case letters or digits.
pub fn parse_code(code: &str) -> Result<String, ReceiptError> {
    if code.len() == 10
        && code
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    {
        Ok(code.to_owned())
    } else {
        Err(ReceiptError::Invalid(
            "an M-Pesa receipt is 10 upper-case letters and digits, like SGA1XYZ123".into(),
        ))
    }
}

/// What a person typed (any case, spaces around): the code, if it is a plausible receipt.
pub fn parse_typed_code(text: &str) -> Result<String, ReceiptError> {
    parse_code(&text.trim().to_ascii_uppercase())
}

#[derive(Clone)]
pub struct ReceiptChecks {
    storage: Arc<dyn Storage>,
    initiator: Initiator,
    /// The C2B shortcode: Transaction Status is asked from it (`PartyA`).
    party: String,
}

/// A check and the payment it belongs to, if any.
#[derive(Debug, Clone)]
pub struct CheckAnswer {
    pub check: ReceiptCheck,
    pub payment: Option<Payment>,
}

impl ReceiptChecks {
    pub fn new(
        storage: Arc<dyn Storage>,
        initiator: Initiator,
        payments: Payments,
        plan: NotificationPlan,
    ) -> Self {
        let party = payments.c2b_short_code().to_owned();
        initiator.register_owner(
            PURPOSE,
            Arc::new(CheckOwner {
                storage: storage.clone(),
                payments,
                plan,
                clock: initiator.clock().clone(),
            }),
        );
        ReceiptChecks {
            storage,
            initiator,
            party,
        }
    }

    /// Asks Safaricom about `code` (Transaction Status), once while a check of it is in flight:
    /// the check in flight is returned instead (and a Telegram chat asking is added to it).
    pub async fn check(
        &self,
        code: &str,
        by: &Requester,
        telegram_chat: Option<i64>,
    ) -> Result<ReceiptCheck, ReceiptError> {
        let code = parse_code(code)?;
        if !self.initiator.configured() {
            return Err(ReceiptError::NotConfigured);
        }
        let mut created = None;
        for _ in 0..5 {
            if let Some(active) = self.storage.active_receipt_check(&code).await? {
                let now = self.initiator.clock().now_ms();
                if active.request_id.is_some() || now - active.created_at < UNASKED_AFTER_MS {
                    return self.watch(active, telegram_chat).await;
                }
                // Its instance stopped before storing its request (or storing it failed):
                // nothing was asked, and nothing will answer it. It ends so that this one asks.
                self.give_up_unasked(&active.id, "its request was never stored")
                    .await?;
                continue;
            }
            match self
                .storage
                .create_receipt_check(NewReceiptCheck {
                    id: new_id("rchk"),
                    code: code.clone(),
                    requested_by: by.name.clone(),
                    source: by.source.to_owned(),
                    telegram_chat,
                    created_at: self.initiator.clock().now_ms(),
                })
                .await
            {
                Ok(check) => {
                    created = Some(check);
                    break;
                }
                // Another check of the code went in flight meanwhile: that one.
                Err(StorageError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        let Some(check) = created else {
            return Err(StorageError::Conflict("receipt check in flight".into()).into());
        };
        let ask = Ask::TransactionStatus {
            receipt: Some(code.clone()),
            originator_conversation_id: None,
            party_a: Some(self.party.clone()),
            remarks: "Receipt check".into(),
        };
        // Stored and recorded on the check before it goes out.
        let stored = match self.initiator.store(PURPOSE, Some(&check.id), &ask).await {
            Ok(stored) => stored,
            Err(e) => {
                // Else the check stays in flight, holding its code, until it is taken as
                // abandoned.
                if let Err(e) = self
                    .give_up_unasked(&check.id, "its request could not be stored")
                    .await
                {
                    tracing::warn!(check_id = %check.id, error = %e, "could not end a receipt check that was not asked");
                }
                return Err(from_initiator(e));
            }
        };
        let request_id = stored.id.clone();
        self.storage
            .update_receipt_check(&check.id, self.initiator.clock().now_ms(), &|c| {
                c.request_id.is_none().then(|| ReceiptCheckUpdate {
                    request_id: Some(request_id.clone()),
                    event: Some(NewMoneyOutEvent {
                        kind: "status_asked".into(),
                        detail: json!({ "request_id": request_id }).to_string(),
                    }),
                    ..Default::default()
                })
            })
            .await?;
        match self.initiator.send(stored, ask).await {
            Err(InitiatorError::NotConfigured) => return Err(ReceiptError::NotConfigured),
            Err(e) => {
                tracing::warn!(check_id = %check.id, error = %e, "the Transaction Status request could not be sent")
            }
            Ok(_) => {}
        }
        Ok(self
            .storage
            .get_receipt_check(&check.id)
            .await?
            .unwrap_or(check))
    }

    /// Ends a check that never asked Safaricom (`failed`, with why), unless it has asked by now.
    async fn give_up_unasked(&self, id: &str, why: &str) -> Result<(), ReceiptError> {
        let now = self.initiator.clock().now_ms();
        let why = format!("not asked: {why}");
        self.storage
            .update_receipt_check(id, now, &|c| {
                (c.request_id.is_none() && !c.status.is_final()).then(|| ReceiptCheckUpdate {
                    status: Some(ReceiptCheckStatus::Failed),
                    result_desc: Some(why.clone()),
                    event: Some(NewMoneyOutEvent {
                        kind: "given_up".into(),
                        detail: json!({ "reason": why }).to_string(),
                    }),
                    ..Default::default()
                })
            })
            .await?;
        tracing::warn!(check_id = %id, reason = %why, "receipt check ended without asking Safaricom");
        Ok(())
    }

    async fn watch(
        &self,
        active: ReceiptCheck,
        telegram_chat: Option<i64>,
    ) -> Result<ReceiptCheck, ReceiptError> {
        let Some(chat) = telegram_chat else {
            return Ok(active);
        };
        if active.telegram_chats.contains(&chat) {
            return Ok(active);
        }
        let written = self
            .storage
            .update_receipt_check(&active.id, self.initiator.clock().now_ms(), &|c| {
                (!c.status.is_final()).then(|| ReceiptCheckUpdate {
                    add_telegram_chat: Some(chat),
                    ..Default::default()
                })
            })
            .await?;
        Ok(match written {
            Some((c, _)) => c,
            None => self
                .storage
                .get_receipt_check(&active.id)
                .await?
                .unwrap_or(active),
        })
    }

    /// The latest check of `code`, with the payment it belongs to (the one it booked or found,
    /// else a payment that holds the receipt).
    pub async fn latest(&self, code: &str) -> Result<CheckAnswer, ReceiptError> {
        let code = parse_code(code)?;
        let check = self
            .storage
            .receipt_checks_for(&code, 1)
            .await?
            .into_iter()
            .next()
            .ok_or(ReceiptError::NotFound)?;
        self.answer(check).await
    }

    pub async fn get(&self, id: &str) -> Result<CheckAnswer, ReceiptError> {
        let check = self
            .storage
            .get_receipt_check(id)
            .await?
            .ok_or(ReceiptError::NotFound)?;
        self.answer(check).await
    }

    pub async fn answer(&self, check: ReceiptCheck) -> Result<CheckAnswer, ReceiptError> {
        let payment = match &check.payment_id {
            Some(id) => self.storage.get_payment(id).await?,
            None => self.storage.find_payment_by_receipt(&check.code).await?,
        };
        Ok(CheckAnswer { check, payment })
    }
}

fn from_initiator(e: InitiatorError) -> ReceiptError {
    match e {
        InitiatorError::Storage(s) => ReceiptError::Storage(s),
        InitiatorError::NotConfigured => ReceiptError::NotConfigured,
        InitiatorError::Refused(why) => ReceiptError::Storage(StorageError::Database(why)),
    }
}

/// What a final Transaction Status request says about a receipt.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// `completed`, `reversed`, `not_found`, `other`; `None` when there was no answer.
    pub finding: Option<&'static str>,
    pub details: Value,
    /// The C2B payment it describes, when it is a completed payment.
    pub report: Option<C2bReport>,
}

/// `"254708374149 - JANE DOE"` → (`254708374149`, `JANE DOE`).
fn party(text: Option<&str>) -> (Option<String>, Option<String>) {
    match text {
        Some(t) => match t.split_once(" - ") {
            Some((id, name)) => (
                Some(id.trim().to_owned()).filter(|s| !s.is_empty()),
                Some(name.trim().to_owned()).filter(|s| !s.is_empty()),
            ),
            None => (Some(t.trim().to_owned()).filter(|s| !s.is_empty()), None),
        },
        None => (None, None),
    }
}

/// Reads a final Transaction Status request about `code`.
pub fn finding_of(code: &str, request: &InitiatorRequest) -> Finding {
    let answered = request.status == RequestStatus::Completed
        || (request.conversation_id.is_some() && request.result_code.is_some());
    if !answered {
        return Finding {
            finding: None,
            details: json!({}),
            report: None,
        };
    }
    if request.status != RequestStatus::Completed {
        let not_found = request.result_code.as_deref() == Some("2032");
        return Finding {
            finding: Some(if not_found { "not_found" } else { "other" }),
            details: json!({}),
            report: None,
        };
    }
    let d: Value = request
        .result
        .as_deref()
        .and_then(|r| serde_json::from_str(r).ok())
        .unwrap_or_default();
    let text = |k: &str| d[k].as_str().map(str::to_owned);
    let (payer_msisdn, payer_name) = party(d["debit_party_name"].as_str());
    let (short_code, business_name) = party(d["credit_party_name"].as_str());
    let amount_cents = d["amount_cents"].as_i64();
    let paid_at_ms = d["finalised_at_ms"]
        .as_i64()
        .or_else(|| d["initiated_at_ms"].as_i64());
    let status = text("transaction_status");
    let receipt = text("receipt_no");
    let details = json!({
        "transaction_status": status,
        "receipt": receipt,
        "amount_cents": amount_cents,
        "payer_name": payer_name,
        "payer_msisdn": payer_msisdn,
        "short_code": short_code,
        "business_name": business_name,
        "paid_at_ms": paid_at_ms,
        "reason_type": text("reason_type"),
    });
    let finding = match status.as_deref() {
        Some(s) if s.eq_ignore_ascii_case("Completed") => "completed",
        Some(s) if s.eq_ignore_ascii_case("Reversed") => "reversed",
        _ => "other",
    };
    let report = match (finding, amount_cents, &short_code) {
        ("completed", Some(cents), Some(short_code))
            if receipt.as_deref().is_none_or(|r| r.trim() == code) =>
        {
            Some(C2bReport {
                receipt: code.to_owned(),
                amount: Cents(cents),
                account_reference: String::new(),
                business_short_code: short_code.clone(),
                payer_name: payer_name.clone(),
                msisdn: payer_msisdn
                    .as_deref()
                    .map_or(PayerMsisdn::Absent, PayerMsisdn::classify),
                transaction_time_ms: paid_at_ms,
                transaction_type: String::new(),
            })
        }
        _ => None,
    };
    Finding {
        finding: Some(finding),
        details,
        report,
    }
}

/// Told when a check's Transaction Status request is final: books or links the payment, makes
/// the check final and tells the chats that asked, once.
struct CheckOwner {
    storage: Arc<dyn Storage>,
    payments: Payments,
    plan: NotificationPlan,
    clock: Clock,
}

#[async_trait]
impl InitiatorOwner for CheckOwner {
    async fn on_final(&self, request: &InitiatorRequest) -> Result<(), StorageError> {
        let Some(check_id) = request.owner_id.as_deref() else {
            return Ok(());
        };
        let Some(check) = self.storage.get_receipt_check(check_id).await? else {
            return Ok(());
        };
        let found = finding_of(&check.code, request);
        // A check given up (no answer in time) takes Safaricom's answer when it comes after
        // all, as it would have in time; any other final check is done.
        let late = check.given_up() && found.finding.is_some();
        if check.status.is_final() && !late {
            return Ok(());
        }
        let mut details = found.details.clone();
        // A late answer books once it came: a booking before that is a newer check's.
        let booked_since = match request.finalized_at {
            Some(at) if late => at,
            _ => check.created_at,
        };
        let (outcome, payment): (Option<&str>, Option<Payment>) =
            match (found.finding, found.report) {
                (Some("completed"), Some(report)) => {
                    let ours = report.business_short_code.trim() == self.payments.c2b_short_code();
                    match self.payments.book_from_status(report).await? {
                        StatusBooking::Booked(p) => (Some("booked"), Some(*p)),
                        // Booked by this check before a crash: still this check's booking.
                        StatusBooking::AlreadyBooked(p)
                            if p.recovered_by.as_deref() == Some("status")
                                && p.created_at >= booked_since =>
                        {
                            (Some("booked"), Some(*p))
                        }
                        StatusBooking::AlreadyBooked(p) => (Some("already_booked"), Some(*p)),
                        StatusBooking::NotBooked { why, note } => {
                            details["note"] = json!(note);
                            let outcome = match why {
                                NotBooked::OtherShortCode => "other_short_code",
                                NotBooked::AwaitStk => "awaiting_stk",
                                _ if !ours => "other_short_code",
                                _ => "not_booked",
                            };
                            (Some(outcome), None)
                        }
                    }
                }
                (Some(_), _) => {
                    // Not a completed payment (or not one we can read): shown, never booked; a
                    // payment we hold with this receipt is still linked.
                    let held = self.storage.find_payment_by_receipt(&check.code).await?;
                    (
                        Some(if held.is_some() {
                            "already_booked"
                        } else {
                            "not_booked"
                        }),
                        held,
                    )
                }
                (None, _) => (None, None),
            };
        let status = if found.finding.is_some() {
            ReceiptCheckStatus::Answered
        } else {
            ReceiptCheckStatus::Failed
        };
        let now = self.clock.now_ms();
        let plan = &self.plan;
        let details_text = details.to_string();
        self.storage
            .update_receipt_check(&check.id, now, &|c| {
                let late = c.given_up() && found.finding.is_some();
                if c.status.is_final() && !late {
                    return None;
                }
                let mut after = c.clone();
                after.status = status;
                after.finding = found.finding.map(str::to_owned);
                after.outcome = outcome.map(str::to_owned);
                after.result_code = request.result_code.clone();
                after.result_desc = request.result_desc.clone();
                after.details = Some(details_text.clone());
                after.payment_id = payment.as_ref().map(|p| p.id.clone());
                let text = customer_text(&after, payment.as_ref());
                let outbox = if plan.telegram {
                    c.telegram_chats
                        .iter()
                        .map(|chat| NewOutboxEvent {
                            id: new_id("evt"),
                            payment_id: payment.as_ref().map(|p| p.id.clone()),
                            channel: Channel::Telegram,
                            event_type: "receipt_check".into(),
                            destination: chat.to_string(),
                            payload: json!({ "kind": NOTICE_HTML, "message": text }).to_string(),
                            // The chat was told "no answer" under the first key.
                            dedupe_key: if late {
                                format!("{}:telegram:receipt_check_late:{chat}", c.id)
                            } else {
                                format!("{}:telegram:receipt_check:{chat}", c.id)
                            },
                            created_at: now,
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                Some(ReceiptCheckUpdate {
                    status: Some(status),
                    finding: after.finding.clone(),
                    outcome: after.outcome.clone(),
                    result_code: request.result_code.clone(),
                    result_desc: request.result_desc.clone(),
                    details: Some(details_text.clone()),
                    payment_id: after.payment_id.clone(),
                    event: Some(NewMoneyOutEvent {
                        kind: format!("receipt_check_{}", status.as_str()),
                        detail: json!({
                            "request_id": request.id,
                            "finding": found.finding,
                            "outcome": outcome,
                            "payment_id": after.payment_id,
                            "result_code": request.result_code,
                            "result_desc": request.result_desc,
                            "late": late,
                        })
                        .to_string(),
                    }),
                    outbox,
                    ..Default::default()
                })
            })
            .await?;
        Ok(())
    }
}

/// What a customer who asked (`/paid CODE`) is told once Safaricom answered: plain text for
/// Telegram's HTML mode (nothing from outside is put in unescaped).
pub fn customer_text(check: &ReceiptCheck, payment: Option<&Payment>) -> String {
    let code = crate::telegram::escape_html(&check.code);
    let amount = payment.map(|p| ksh(p.amount.shillings())).or_else(|| {
        check
            .details
            .as_deref()
            .and_then(|d| serde_json::from_str::<Value>(d).ok())
            .and_then(|d| d["amount_cents"].as_i64())
            .map(|c| ksh(c / 100))
    });
    let amount = amount.map(|a| format!(" of {a}")).unwrap_or_default();
    match (
        check.status,
        check.finding.as_deref(),
        check.outcome.as_deref(),
    ) {
        (_, Some("completed"), Some("booked" | "already_booked")) => format!(
            "✅ Safaricom confirms your payment{amount} (receipt <code>{code}</code>). It is recorded: thank you!"
        ),
        (_, Some("completed"), Some("awaiting_stk")) => format!(
            "⏳ Safaricom confirms the payment{amount} (receipt <code>{code}</code>); it is being matched to your M-Pesa prompt and will be recorded shortly."
        ),
        (_, Some("completed"), _) => format!(
            "ℹ️ Safaricom knows receipt <code>{code}</code>{amount}, but it was not paid to this shop's paybill or till, so it cannot be recorded here."
        ),
        (_, Some("reversed"), _) => format!(
            "↩️ Safaricom says the payment with receipt <code>{code}</code> was reversed, so it cannot be recorded."
        ),
        (_, Some("not_found"), _) => format!(
            "❌ Safaricom does not know receipt <code>{code}</code>. Check the code in your M-Pesa message and try again."
        ),
        (_, Some(_), _) => format!(
            "⚠️ Safaricom could not confirm receipt <code>{code}</code>. Please contact the shop with the code."
        ),
        _ => format!(
            "⚠️ Safaricom did not answer about receipt <code>{code}</code>. Please try again later with <code>/paid {code}</code>."
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_ten_upper_case_letters_or_digits() {
        assert!(parse_code("SGA1XYZ123").is_ok());
        for bad in [
            "sga1xyz123",
            "SGA1XYZ12",
            "SGA1XYZ1234",
            "SGA1 XYZ12",
            "",
            "SGA1XYZ12É",
        ] {
            assert!(parse_code(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_typed_code(" sga1xyz123\n").unwrap(), "SGA1XYZ123");
    }

    fn answered(result: Value) -> InitiatorRequest {
        InitiatorRequest {
            id: "ireq_1".into(),
            kind: mpesa_domain::RequestKind::TransactionStatus,
            purpose: PURPOSE.into(),
            owner_id: Some("rchk_1".into()),
            originator_conversation_id: Some("oc".into()),
            conversation_id: Some("AG_20240206_2018x".into()),
            status: RequestStatus::Completed,
            params: "{}".into(),
            result_code: Some("0".into()),
            result_desc: Some("ok".into()),
            receipt: None,
            result: Some(result.to_string()),
            needs_review: false,
            attempts: 0,
            next_check_at: None,
            owner_notified_at: None,
            created_at: 0,
            updated_at: 0,
            finalized_at: Some(1),
            version: 3,
        }
    }

    #[test]
    fn a_completed_answer_describes_the_c2b_payment() {
        let r = answered(json!({
            "receipt_no": "SB60ABCD12",
            "transaction_status": "Completed",
            "amount_cents": 15000,
            "debit_party_name": "254708374149 - JANE DOE",
            "credit_party_name": "600000 - TEST BUSINESS",
            "finalised_at_ms": 1_700_000_000_000_i64,
        }));
        let f = finding_of("SB60ABCD12", &r);
        assert_eq!(f.finding, Some("completed"));
        let report = f.report.unwrap();
        assert_eq!(report.business_short_code, "600000");
        assert_eq!(report.amount, Cents(15000));
        assert_eq!(report.payer_name.as_deref(), Some("JANE DOE"));
        assert_eq!(
            report.msisdn.number().map(|m| m.as_str()),
            Some("254708374149")
        );
        // Another receipt in the answer than the one asked about: nothing to book.
        assert!(finding_of("SB60ABCD99", &r).report.is_none());
        // A reversal is shown, never booked.
        let reversed = answered(
            json!({"transaction_status": "Reversed", "amount_cents": 100,
            "credit_party_name": "600000 - X"}),
        );
        let f = finding_of("SB60ABCD12", &reversed);
        assert_eq!((f.finding, f.report.is_none()), (Some("reversed"), true));
    }

    #[test]
    fn failures_are_not_found_or_no_answer() {
        let mut r = answered(json!({}));
        r.status = RequestStatus::Failed;
        r.result_code = Some("2032".into());
        assert_eq!(finding_of("X", &r).finding, Some("not_found"));
        // Expired in the queue, or refused before it was queued: no answer.
        r.result_code = None;
        assert_eq!(finding_of("X", &r).finding, None);
        r.conversation_id = None;
        r.result_code = Some("500.003.1001".into());
        assert_eq!(finding_of("X", &r).finding, None);
    }
}
