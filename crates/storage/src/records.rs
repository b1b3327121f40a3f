//! Rows to records, the same for every backend. Stored enum texts that we cannot read back are
//! `Corrupt`, never a panic or a silent default.

use mpesa_domain::{Amount, Msisdn, PaymentStatus};

use crate::Result;
use crate::db::RowExt;
use crate::error::StorageError;
use crate::model::*;

/// The columns of `payments`, in the order the statements below select them.
macro_rules! payment_columns {
    () => {
        "id, status, phone, amount, reference, description, customer_email, telegram_chat_id, \
         metadata, checkout_request_id, merchant_request_id, mpesa_receipt_number, result_code, \
         result_desc, transaction_date, needs_review, review_reason, api_key_id, source, \
         query_attempts, next_check_at, created_at, updated_at, finalized_at, version, channel, \
         business_short_code, payer_name, payer_msisdn, recovered_by, payment_link_id, customer_language"
    };
}
pub(crate) use payment_columns;

macro_rules! callback_columns {
    () => {
        "id, kind, received_at, remote_addr, headers, body, checkout_request_id, payment_id, \
         outcome, error_message, receipt"
    };
}
pub(crate) use callback_columns;

macro_rules! outbox_columns {
    () => {
        "id, payment_id, channel, event_type, destination, payload, dedupe_key, status, attempts, \
         next_attempt_at, lease_owner, lease_until, last_error, created_at, delivered_at"
    };
}
pub(crate) use outbox_columns;

fn corrupt(what: &str, value: &str) -> StorageError {
    StorageError::Corrupt(format!("unknown {what} {value:?}"))
}

pub(crate) fn payment_status(text: &str) -> Result<PaymentStatus> {
    PaymentStatus::parse(text).ok_or_else(|| corrupt("payment status", text))
}

pub(crate) fn payment(row: &impl RowExt) -> Result<Payment> {
    let phone = row.text("phone")?;
    let source = row.text("source")?;
    let channel = row.text("channel")?;
    Ok(Payment {
        id: row.text("id")?,
        status: payment_status(&row.text("status")?)?,
        // '' is a C2B payment with no usable number (see migration 0005).
        phone: match phone.as_str() {
            "" => None,
            _ => Some(Msisdn::parse(&phone).map_err(|_| corrupt("phone number", &phone))?),
        },
        amount: Amount::from_stored(row.int("amount")?),
        reference: row.text("reference")?,
        description: row.text("description")?,
        customer_email: row.opt_text("customer_email")?,
        telegram_chat_id: row.opt_int("telegram_chat_id")?,
        metadata: row.opt_text("metadata")?,
        checkout_request_id: row.opt_text("checkout_request_id")?,
        merchant_request_id: row.opt_text("merchant_request_id")?,
        mpesa_receipt_number: row.opt_text("mpesa_receipt_number")?,
        result_code: row.opt_text("result_code")?,
        result_desc: row.opt_text("result_desc")?,
        transaction_date: row.opt_int("transaction_date")?,
        needs_review: row.flag("needs_review")?,
        review_reason: row.opt_text("review_reason")?,
        api_key_id: row.opt_text("api_key_id")?,
        source: PaymentSource::parse(&source).ok_or_else(|| corrupt("payment source", &source))?,
        query_attempts: row.int32("query_attempts")?,
        next_check_at: row.opt_int("next_check_at")?,
        created_at: row.int("created_at")?,
        updated_at: row.int("updated_at")?,
        finalized_at: row.opt_int("finalized_at")?,
        version: row.int("version")?,
        channel: PaymentChannel::parse(&channel)
            .ok_or_else(|| corrupt("payment channel", &channel))?,
        business_short_code: row.opt_text("business_short_code")?,
        payer_name: row.opt_text("payer_name")?,
        payer_msisdn: row.opt_text("payer_msisdn")?,
        recovered_by: row.opt_text("recovered_by")?,
        payment_link_id: row.opt_text("payment_link_id")?,
        customer_language: match row.opt_text("customer_language")? {
            None => None,
            Some(l) => Some(
                mpesa_domain::Lang::parse(&l).ok_or_else(|| corrupt("customer language", &l))?,
            ),
        },
    })
}

/// The columns of `payment_links`, in the order the statements select them.
macro_rules! payment_link_columns {
    () => {
        "id, slug, account_number, title, amount, amount_min, amount_max, reference, description, \
         single_use, expires_at, status, language, paid_payment_id, created_at, updated_at"
    };
}
pub(crate) use payment_link_columns;

pub(crate) fn payment_link(row: &impl RowExt) -> Result<PaymentLink> {
    let status = row.text("status")?;
    let language = row.opt_text("language")?;
    Ok(PaymentLink {
        id: row.text("id")?,
        slug: row.text("slug")?,
        account_number: row.text("account_number")?,
        title: row.text("title")?,
        amount: row.opt_int("amount")?,
        amount_min: row.opt_int("amount_min")?,
        amount_max: row.opt_int("amount_max")?,
        reference: row.opt_text("reference")?,
        description: row.opt_text("description")?,
        single_use: row.flag("single_use")?,
        expires_at: row.opt_int("expires_at")?,
        status: mpesa_domain::LinkStatus::parse(&status)
            .ok_or_else(|| corrupt("link status", &status))?,
        language: match language {
            None => None,
            Some(l) => {
                Some(mpesa_domain::Lang::parse(&l).ok_or_else(|| corrupt("link language", &l))?)
            }
        },
        paid_payment_id: row.opt_text("paid_payment_id")?,
        created_at: row.int("created_at")?,
        updated_at: row.int("updated_at")?,
    })
}

pub(crate) fn payment_event(row: &impl RowExt) -> Result<PaymentEvent> {
    Ok(PaymentEvent {
        id: row.int("id")?,
        payment_id: row.text("payment_id")?,
        at: row.int("occurred_at")?,
        kind: row.text("kind")?,
        detail: row.text("detail")?,
    })
}

pub(crate) fn callback(row: &impl RowExt) -> Result<RawCallback> {
    let kind = row.text("kind")?;
    let outcome = row.text("outcome")?;
    Ok(RawCallback {
        id: row.text("id")?,
        kind: CallbackKind::parse(&kind).ok_or_else(|| corrupt("callback kind", &kind))?,
        received_at: row.int("received_at")?,
        remote_addr: row.opt_text("remote_addr")?,
        headers: row.text("headers")?,
        body: row.bytes("body")?,
        checkout_request_id: row.opt_text("checkout_request_id")?,
        receipt: row.opt_text("receipt")?,
        payment_id: row.opt_text("payment_id")?,
        outcome: CallbackOutcome::parse(&outcome)
            .ok_or_else(|| corrupt("callback outcome", &outcome))?,
        error: row.opt_text("error_message")?,
    })
}

pub(crate) fn outbox_status(text: &str) -> Result<OutboxStatus> {
    OutboxStatus::parse(text).ok_or_else(|| corrupt("outbox status", text))
}

pub(crate) fn outbox_event(row: &impl RowExt) -> Result<OutboxEvent> {
    let channel = row.text("channel")?;
    Ok(OutboxEvent {
        id: row.text("id")?,
        payment_id: row.opt_text("payment_id")?,
        channel: Channel::parse(&channel).ok_or_else(|| corrupt("channel", &channel))?,
        event_type: row.text("event_type")?,
        destination: row.text("destination")?,
        payload: row.text("payload")?,
        dedupe_key: row.text("dedupe_key")?,
        status: outbox_status(&row.text("status")?)?,
        attempts: row.int32("attempts")?,
        next_attempt_at: row.int("next_attempt_at")?,
        lease_owner: row.opt_text("lease_owner")?,
        lease_until: row.opt_int("lease_until")?,
        last_error: row.opt_text("last_error")?,
        created_at: row.int("created_at")?,
        delivered_at: row.opt_int("delivered_at")?,
    })
}

pub(crate) fn outbox_attempt(row: &impl RowExt) -> Result<OutboxAttempt> {
    Ok(OutboxAttempt {
        id: row.int("id")?,
        event_id: row.text("event_id")?,
        attempt: row.int32("attempt")?,
        started_at: row.int("started_at")?,
        duration_ms: row.int("duration_ms")?,
        result: row.text("result")?,
        response_code: row.opt_int32("response_code")?,
        error: row.opt_text("error_message")?,
    })
}

pub(crate) fn api_key(row: &impl RowExt) -> Result<ApiKey> {
    Ok(ApiKey {
        id: row.text("id")?,
        name: row.text("name")?,
        prefix: row.text("key_prefix")?,
        hash: row.text("key_hash")?,
        created_at: row.int("created_at")?,
        revoked_at: row.opt_int("revoked_at")?,
        last_used_at: row.opt_int("last_used_at")?,
        created_by: row.opt_text("created_by")?,
    })
}

pub(crate) fn admin_user(row: &impl RowExt) -> Result<AdminUser> {
    Ok(AdminUser {
        id: row.text("id")?,
        username: row.text("username")?,
        password_hash: row.text("password_hash")?,
        created_at: row.int("created_at")?,
    })
}

pub(crate) fn admin_session(row: &impl RowExt) -> Result<AdminSession> {
    Ok(AdminSession {
        token_hash: row.text("token_hash")?,
        user_id: row.text("user_id")?,
        username: row.text("username")?,
        csrf_token: row.text("csrf_token")?,
        created_at: row.int("created_at")?,
        expires_at: row.int("expires_at")?,
    })
}

pub(crate) fn telegram_link(row: &impl RowExt) -> Result<TelegramLink> {
    Ok(TelegramLink {
        chat_id: row.int("chat_id")?,
        user_id: row.int("user_id")?,
        phone: row.text("phone")?,
        linked_at: row.int("linked_at")?,
        blocked_at: row.opt_int("blocked_at")?,
    })
}

pub(crate) fn telegram_status_message(row: &impl RowExt) -> Result<TelegramStatusMessage> {
    Ok(TelegramStatusMessage {
        payment_id: row.text("payment_id")?,
        chat_id: row.int("chat_id")?,
        message_id: row.int("message_id")?,
        updated_at: row.int("updated_at")?,
    })
}
