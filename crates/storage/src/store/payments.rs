//! Payments: creation with idempotency claims, reads, the one shared write path
//! ([`apply_update`]) and the reconciler's claims.

use std::collections::HashMap;

use mpesa_domain::PaymentStatus;

use crate::Millis;
use crate::cursor::Keyset;
use crate::db::{Arg, Conn, SqlBuilder, Stmt};
use crate::error::{DbResult, StorageError};
use crate::model::*;
use crate::records::{self, payment_columns};
use crate::store::{check_len, idempotency, links, outbox};

const SELECT_BY_ID: &str = concat!(
    "SELECT ",
    payment_columns!(),
    " FROM payments WHERE id = $1"
);
const SELECT_BY_CHECKOUT: &str = concat!(
    "SELECT ",
    payment_columns!(),
    " FROM payments WHERE checkout_request_id = $1"
);

/// Whether a read locks the row until the transaction ends (a no-op on SQLite).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lock {
    None,
    ForUpdate,
}

fn with_lock<C: Conn>(sql: &'static str, lock: Lock) -> Stmt {
    match lock {
        Lock::None => Stmt::new(sql),
        Lock::ForUpdate => Stmt::with_suffix(sql, C::DIALECT.for_update),
    }
}

pub(crate) async fn by_id<C: Conn>(c: &mut C, id: &str, lock: Lock) -> DbResult<Option<Payment>> {
    let row = c
        .fetch_optional(with_lock::<C>(SELECT_BY_ID, lock).bind(id))
        .await?;
    Ok(row.as_ref().map(records::payment).transpose()?)
}

pub(crate) async fn by_checkout_request_id<C: Conn>(
    c: &mut C,
    checkout_request_id: &str,
    lock: Lock,
) -> DbResult<Option<Payment>> {
    let row = c
        .fetch_optional(with_lock::<C>(SELECT_BY_CHECKOUT, lock).bind(checkout_request_id))
        .await?;
    Ok(row.as_ref().map(records::payment).transpose()?)
}

/// Stores a new payment and, when given, claims its idempotency key: the claim's unique key
/// decides between concurrent identical requests, so at most one of them inserts a payment.
/// The payment's [`StartRules`] are checked first, and nothing of the payment is written when
/// one refuses it (a door with rules looks its key up before it starts).
pub(crate) async fn create<C: Conn>(
    c: &mut C,
    new: &NewPayment,
    claim: Option<&IdempotencyClaim>,
) -> DbResult<CreatePaymentResult> {
    if new.rules.one_open_per_phone
        && let Some(open) = open_payment_to(c, new.phone.as_str(), new.created_at).await?
    {
        return Ok(CreatePaymentResult::OpenPayment(Box::new(open)));
    }
    if new.rules.one_open_per_link
        && let Some(link_id) = &new.payment_link_id
        && let Some(taken) = single_use_link_taken(c, link_id, new.created_at).await?
    {
        return Ok(CreatePaymentResult::LinkTaken(taken));
    }
    if !new.rules.limits.is_empty()
        && let Some(retry_at) = links::hit_rate_limits(c, &new.rules.limits, new.created_at).await?
    {
        return Ok(CreatePaymentResult::Limited { retry_at });
    }
    if let Some(claim) = claim {
        match idempotency::claim(c, claim, &new.id).await? {
            KeyClaim::Claimed => {}
            // The key was claimed before us: nothing of ours was written.
            KeyClaim::Answered(answer) => return Ok(CreatePaymentResult::Replay(answer)),
            KeyClaim::Running { record_id } => {
                return Ok(CreatePaymentResult::InProgress {
                    payment_id: record_id,
                });
            }
            KeyClaim::Reused => return Ok(CreatePaymentResult::KeyReused),
        }
    }
    let payment = insert(c, new).await?;
    insert_event(
        c,
        &payment.id,
        payment.created_at,
        &NewPaymentEvent {
            kind: "created".into(),
            detail: serde_json::json!({ "source": payment.source.as_str() }).to_string(),
        },
    )
    .await?;
    Ok(CreatePaymentResult::Created(payment))
}

/// Takes the row `bucket` of `rate_limits` for this transaction: a concurrent start that takes
/// it too waits for this one's commit (or, on Galera, fails certification and runs again).
async fn serialise_on<C: Conn>(c: &mut C, bucket: &str, now: Millis) -> DbResult<()> {
    check_len("rate-limit bucket", bucket, 190)?;
    c.execute(
        Stmt::new(C::DIALECT.insert_rate_limit_if_absent)
            .bind(bucket)
            .bind(now),
    )
    .await?;
    // A write, not only a lock: Galera certifies writes, not `FOR UPDATE`.
    c.execute(
        Stmt::new("UPDATE rate_limits SET window_start = $1, hits = hits + 1 WHERE bucket = $2")
            .bind(now)
            .bind(bucket),
    )
    .await?;
    Ok(())
}

/// How long a payment through a single-use link keeps other phones from it: an STK prompt
/// lives about a minute on the phone; the rest is for Daraja's callback to come.
const LINK_PROMPT_LIVES_MS: Millis = 3 * 60_000;

/// Why a new payment through single-use link `link_id` cannot start: `Some(None)` once the link
/// is paid (or closed), `Some(Some(open))` while another payment through it is open (a prompt to
/// another phone: both could be paid). Read after taking the link's `prompt-link:` row.
async fn single_use_link_taken<C: Conn>(
    c: &mut C,
    link_id: &str,
    now: Millis,
) -> DbResult<Option<Option<Box<Payment>>>> {
    serialise_on(c, &format!("prompt-link:{link_id}"), now).await?;
    let open_for_payment = c
        .fetch_optional(
            Stmt::new(
                "SELECT id FROM payment_links WHERE id = $1 AND status = 'active' \
                 AND paid_payment_id IS NULL AND (expires_at IS NULL OR expires_at > $2)",
            )
            .bind(link_id)
            .bind(now),
        )
        .await?
        .is_some();
    if !open_for_payment {
        return Ok(Some(None));
    }
    // Only a prompt started in the last few minutes can still be on a phone: one left open
    // longer (Daraja not answering its STK Query, for up to a day) must not keep the link from
    // every payer meanwhile; if both are paid after all, the second is held for review.
    const OPEN: &str = concat!(
        "SELECT ",
        payment_columns!(),
        " FROM payments WHERE payment_link_id = $1 AND status IN ($2, $3) AND needs_review = $4 \
         AND created_at > $5 ORDER BY id DESC LIMIT 1"
    );
    let row = c
        .fetch_optional(
            Stmt::new(OPEN)
                .bind(link_id)
                .bind(PaymentStatus::Pending.as_str())
                .bind(PaymentStatus::Initiated.as_str())
                .bind(false)
                .bind(now - LINK_PROMPT_LIVES_MS),
        )
        .await?;
    Ok(row
        .as_ref()
        .map(records::payment)
        .transpose()?
        .map(|open| Some(Box::new(open))))
}

/// The newest open payment to `phone` (a prompt on the phone first, else one being pushed),
/// read after taking the phone's `prompt:` row in `rate_limits`: a concurrent start to the same
/// phone holds it until it commits, so its payment is seen here.
async fn open_payment_to<C: Conn>(
    c: &mut C,
    phone: &str,
    now: Millis,
) -> DbResult<Option<Payment>> {
    serialise_on(c, &format!("prompt:{phone}"), now).await?;
    // One statement, so one snapshot: read as two (pending, then initiated), a payment whose
    // push was accepted between them (initiated → pending) was in neither, and a second
    // instance pushed to the phone too. A payment held for review is not open: its prompt is
    // long gone (held at expiry when Daraja never answered), and it waits for a person, who
    // may take days; it would otherwise refuse every new payment to the phone until then.
    const OPEN: &str = concat!(
        "SELECT ",
        payment_columns!(),
        " FROM payments WHERE phone = $1 AND status IN ($2, $3) AND needs_review = $4 \
         ORDER BY id DESC LIMIT 20"
    );
    let rows = c
        .fetch_all(
            Stmt::new(OPEN)
                .bind(phone)
                .bind(PaymentStatus::Pending.as_str())
                .bind(PaymentStatus::Initiated.as_str())
                .bind(false),
        )
        .await?;
    let open = rows
        .iter()
        .map(records::payment)
        .collect::<std::result::Result<Vec<_>, _>>()?;
    // A prompt on the phone first, else one being pushed.
    Ok(open
        .iter()
        .find(|p| p.status == PaymentStatus::Pending)
        .or_else(|| open.first())
        .cloned())
}

async fn insert<C: Conn>(c: &mut C, new: &NewPayment) -> DbResult<Payment> {
    check_len("payment id", &new.id, MAX_ID_LEN)?;
    check_len("reference", &new.reference, 64)?;
    let payment = Payment {
        id: new.id.clone(),
        status: PaymentStatus::Initiated,
        phone: Some(new.phone.clone()),
        amount: new.amount,
        reference: new.reference.clone(),
        description: new.description.clone(),
        customer_email: new.customer_email.clone(),
        telegram_chat_id: new.telegram_chat_id,
        metadata: new.metadata.clone(),
        checkout_request_id: None,
        merchant_request_id: None,
        mpesa_receipt_number: None,
        result_code: None,
        result_desc: None,
        transaction_date: None,
        needs_review: false,
        review_reason: None,
        api_key_id: new.api_key_id.clone(),
        source: new.source,
        query_attempts: 0,
        next_check_at: Some(new.next_check_at),
        created_at: new.created_at,
        updated_at: new.created_at,
        finalized_at: None,
        version: 1,
        payment_link_id: new.payment_link_id.clone(),
        customer_language: new.customer_language,
        channel: PaymentChannel::Stk,
        business_short_code: None,
        payer_name: None,
        payer_msisdn: None,
        recovered_by: None,
    };
    c.execute(
        Stmt::new(
            "INSERT INTO payments (id, status, phone, amount, reference, description, customer_email, \
             telegram_chat_id, metadata, needs_review, api_key_id, source, query_attempts, \
             next_check_at, created_at, updated_at, version, payment_link_id, customer_language) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, \
             $19)",
        )
        .bind(&payment.id)
        .bind(payment.status.as_str())
        .bind(new.phone.as_str())
        .bind(payment.amount.shillings())
        .bind(&payment.reference)
        .bind(&payment.description)
        .bind(&payment.customer_email)
        .bind(payment.telegram_chat_id)
        .bind(&payment.metadata)
        .bind(payment.needs_review)
        .bind(&payment.api_key_id)
        .bind(payment.source.as_str())
        .bind(payment.query_attempts)
        .bind(payment.next_check_at)
        .bind(payment.created_at)
        .bind(payment.updated_at)
        .bind(payment.version)
        .bind(&payment.payment_link_id)
        .bind(payment.customer_language.map(|l| l.as_str())),
    )
    .await?;
    Ok(payment)
}

pub(crate) const MAX_ID_LEN: usize = 64;

/// Inserts payments that come into being settled (C2B), in one statement, skipping any whose
/// receipt is taken; then reads back who holds each receipt. Returns, per receipt, the payment
/// that holds it: ours when the insert won, another when a copy, another path or another
/// instance booked it first (a concurrent inserter of the same receipt is waited for).
pub(crate) async fn insert_booked<C: Conn>(
    c: &mut C,
    booked: &[&Payment],
) -> DbResult<HashMap<String, Payment>> {
    if booked.is_empty() {
        return Ok(HashMap::new());
    }
    let mut sql = SqlBuilder::new(
        "INSERT INTO payments (id, status, phone, amount, reference, description, customer_email, \
         telegram_chat_id, metadata, mpesa_receipt_number, result_code, result_desc, \
         transaction_date, needs_review, review_reason, api_key_id, source, query_attempts, \
         next_check_at, created_at, updated_at, finalized_at, version, channel, \
         business_short_code, payer_name, payer_msisdn, recovered_by, payment_link_id) VALUES ",
    );
    for (i, p) in booked.iter().enumerate() {
        check_len("payment id", &p.id, MAX_ID_LEN)?;
        check_len("reference", &p.reference, 64)?;
        let receipt = p.mpesa_receipt_number.as_deref().unwrap_or_default();
        check_len("receipt", receipt, MAX_ID_LEN)?;
        sql.push(if i == 0 { "(" } else { ", (" });
        let values: [Arg; 29] = [
            p.id.clone().into(),
            p.status.as_str().into(),
            p.phone.as_ref().map(|m| m.as_str()).unwrap_or("").into(),
            p.amount.shillings().into(),
            p.reference.clone().into(),
            p.description.clone().into(),
            p.customer_email.clone().into(),
            p.telegram_chat_id.into(),
            p.metadata.clone().into(),
            p.mpesa_receipt_number.clone().into(),
            p.result_code.clone().into(),
            p.result_desc.clone().into(),
            p.transaction_date.into(),
            p.needs_review.into(),
            p.review_reason.clone().into(),
            p.api_key_id.clone().into(),
            p.source.as_str().into(),
            p.query_attempts.into(),
            p.next_check_at.into(),
            p.created_at.into(),
            p.updated_at.into(),
            p.finalized_at.into(),
            p.version.into(),
            p.channel.as_str().into(),
            p.business_short_code.clone().into(),
            p.payer_name.clone().into(),
            p.payer_msisdn.clone().into(),
            p.recovered_by.clone().into(),
            p.payment_link_id.clone().into(),
        ];
        for (n, v) in values.into_iter().enumerate() {
            if n > 0 {
                sql.push(", ");
            }
            sql.push_bind(v);
        }
        sql.push(")");
    }
    sql.push(C::DIALECT.insert_skipping_taken_keys);
    c.execute(sql.build()).await?;
    let receipts: Vec<&str> = booked
        .iter()
        .filter_map(|p| p.mpesa_receipt_number.as_deref())
        .collect();
    Ok(by_receipts(c, &receipts)
        .await?
        .into_iter()
        .filter_map(|p| Some((p.mpesa_receipt_number.clone()?, p)))
        .collect())
}

/// [`insert_booked`] for one payment, with its timeline entry and outbox rows when it won.
pub(crate) async fn book<C: Conn>(
    c: &mut C,
    payment: &Payment,
    update: &PaymentUpdate,
    now: Millis,
) -> DbResult<(Payment, bool)> {
    let receipt = payment.mpesa_receipt_number.as_deref().unwrap_or_default();
    let mut holder = insert_booked(c, &[payment])
        .await?
        .remove(receipt)
        .ok_or_else(|| StorageError::Database(format!("no payment holds receipt {receipt}")))?;
    let ours = holder.id == payment.id;
    if ours {
        if let Some(event) = update.timeline_entry() {
            insert_event(c, &holder.id, now, &event).await?;
        }
        let held = links::settle_booked(c, &mut holder, now).await?;
        if let Some(held) = &held {
            insert_event(c, &holder.id, now, &held.event).await?;
        }
        outbox::insert_events(c, &links::outbox_rows(update, held.as_ref())).await?;
    }
    Ok((holder, ours))
}

/// The payments that hold these receipts (unlocked: a receipt, once held, is never released).
pub(crate) async fn by_receipts<C: Conn>(c: &mut C, receipts: &[&str]) -> DbResult<Vec<Payment>> {
    if receipts.is_empty() {
        return Ok(Vec::new());
    }
    let mut sql = SqlBuilder::new(concat!(
        "SELECT ",
        payment_columns!(),
        " FROM payments WHERE mpesa_receipt_number IN ("
    ));
    sql.push_bind_list(receipts.iter().copied()).push(")");
    let rows = c.fetch_all(sql.build()).await?;
    Ok(rows
        .iter()
        .map(records::payment)
        .collect::<Result<Vec<_>, _>>()?)
}

/// The shared write of every payment change (`update_payment`, callbacks, reapplied
/// callbacks): applies `update` to the locked row `current` and writes the timeline entry and
/// the outbox rows. Returns the payment as written.
pub(crate) async fn apply_update<C: Conn>(
    c: &mut C,
    current: &Payment,
    update: &PaymentUpdate,
    now: Millis,
) -> DbResult<Payment> {
    let mut next = updated(current, update, now);
    let held = links::settle(c, current.status, &mut next, now).await?;
    write_row(c, current.version, &next).await?;
    if let Some(event) = update.timeline_entry() {
        insert_event(c, &next.id, now, &event).await?;
    }
    if let Some(held) = &held {
        insert_event(c, &next.id, now, &held.event).await?;
    }
    outbox::insert_events(c, &links::outbox_rows(update, held.as_ref())).await?;
    Ok(next)
}

/// Writes `next` over the locked row that had `locked_version`.
pub(crate) async fn write_row<C: Conn>(
    c: &mut C,
    locked_version: i64,
    next: &Payment,
) -> DbResult<()> {
    let changed = c
        .execute(
            Stmt::new(
                "UPDATE payments SET status = $1, checkout_request_id = $2, merchant_request_id = $3, \
                 mpesa_receipt_number = $4, result_code = $5, result_desc = $6, transaction_date = $7, \
                 needs_review = $8, review_reason = $9, query_attempts = $10, next_check_at = $11, \
                 updated_at = $12, finalized_at = $13, version = $14 \
                 WHERE id = $15 AND version = $16",
            )
            .bind(next.status.as_str())
            .bind(&next.checkout_request_id)
            .bind(&next.merchant_request_id)
            .bind(&next.mpesa_receipt_number)
            .bind(&next.result_code)
            .bind(&next.result_desc)
            .bind(next.transaction_date)
            .bind(next.needs_review)
            .bind(&next.review_reason)
            .bind(next.query_attempts)
            .bind(next.next_check_at)
            .bind(next.updated_at)
            .bind(next.finalized_at)
            .bind(next.version)
            .bind(&next.id)
            .bind(locked_version),
        )
        .await?;
    if changed != 1 {
        // The row is locked (or, on SQLite, we are the only writer): this cannot happen unless
        // the caller passed a row it did not lock.
        return Err(
            StorageError::Database(format!("payment {} changed while locked", next.id)).into(),
        );
    }
    Ok(())
}

/// Writes several locked payments as [`write_row`] does, in one statement where the backend can
/// (`UPDATE … FROM (VALUES …)`; the derived table's columns are `column1…` on SQLite and
/// PostgreSQL alike). Every row must still have the version it was locked at.
///
/// The rows were found and locked by their CheckoutRequestID, so this never writes that column:
/// naming an indexed column in `SET` makes SQLite delete and re-insert its index entry even when
/// the value is the same, and that unique index is keyed by Safaricom's random ids, so each
/// payment cost one more page in the write-ahead log. A row whose CheckoutRequestID differs from
/// `found_by` is refused rather than written wrongly.
///
/// Returns the statement (`None` for no rows); it changes `rows.len()` rows unless a row moved,
/// which the caller checks ([`all_written`]).
pub(crate) fn rows_update<C: Conn>(
    rows: &[(i64, &Payment)],
    found_by: &[&str],
) -> DbResult<Option<Stmt>> {
    if rows.len() != found_by.len()
        || rows
            .iter()
            .zip(found_by)
            .any(|((_, next), key)| next.checkout_request_id.as_deref() != Some(*key))
    {
        return Err(StorageError::Database(
            "a callback cannot change the CheckoutRequestID its payment was found by".into(),
        )
        .into());
    }
    if rows.is_empty() {
        return Ok(None);
    }
    if !C::DIALECT.update_from_values {
        return Ok(Some(rows_update_by_case(rows)));
    }
    let mut sql = SqlBuilder::new(
        "UPDATE payments SET status = v.column3, merchant_request_id = v.column4, \
         mpesa_receipt_number = v.column5, result_code = v.column6, result_desc = v.column7, \
         transaction_date = v.column8, needs_review = v.column9, review_reason = v.column10, \
         query_attempts = v.column11, next_check_at = v.column12, updated_at = v.column13, \
         finalized_at = v.column14, version = v.column15 FROM (VALUES ",
    );
    for (i, (locked_version, next)) in rows.iter().enumerate() {
        sql.push(if i == 0 { "(" } else { ", (" })
            .push_bind(&next.id)
            .push(", ")
            .push_bind(*locked_version)
            .push(", ")
            .push_bind(next.status.as_str())
            .push(", ")
            .push_bind(&next.merchant_request_id)
            .push(", ")
            .push_bind(&next.mpesa_receipt_number)
            .push(", ")
            .push_bind(&next.result_code)
            .push(", ")
            .push_bind(&next.result_desc)
            .push(", ")
            .push_bind(next.transaction_date)
            .push(", ")
            .push_bind(next.needs_review)
            .push(", ")
            .push_bind(&next.review_reason)
            .push(", ")
            .push_bind(next.query_attempts)
            .push(", ")
            .push_bind(next.next_check_at)
            .push(", ")
            .push_bind(next.updated_at)
            .push(", ")
            .push_bind(next.finalized_at)
            .push(", ")
            .push_bind(next.version)
            .push(")");
    }
    sql.push(") AS v WHERE payments.id = v.column1 AND payments.version = v.column2");
    Ok(Some(sql.build()))
}

/// As in `write_row`: only rows the caller did not lock can have moved.
pub(crate) fn all_written(changed: u64, rows: usize) -> DbResult<()> {
    if changed != rows as u64 {
        return Err(StorageError::Database(format!(
            "{} of {rows} payments changed while locked",
            rows as u64 - changed.min(rows as u64)
        ))
        .into());
    }
    Ok(())
}

/// [`rows_update`] for MySQL and MariaDB, which have no `UPDATE … FROM (VALUES …)`: one
/// statement whose every column is `CASE id WHEN … THEN … END` (a round trip per payment cost
/// milliseconds per batch).
fn rows_update_by_case(rows: &[(i64, &Payment)]) -> Stmt {
    type Value = fn(&Payment) -> Arg;
    const COLUMNS: [(&str, Value); 13] = [
        ("status = CASE id", |p| p.status.as_str().into()),
        ("merchant_request_id = CASE id", |p| {
            p.merchant_request_id.clone().into()
        }),
        ("mpesa_receipt_number = CASE id", |p| {
            p.mpesa_receipt_number.clone().into()
        }),
        ("result_code = CASE id", |p| p.result_code.clone().into()),
        ("result_desc = CASE id", |p| p.result_desc.clone().into()),
        ("transaction_date = CASE id", |p| p.transaction_date.into()),
        ("needs_review = CASE id", |p| p.needs_review.into()),
        ("review_reason = CASE id", |p| {
            p.review_reason.clone().into()
        }),
        ("query_attempts = CASE id", |p| p.query_attempts.into()),
        ("next_check_at = CASE id", |p| p.next_check_at.into()),
        ("updated_at = CASE id", |p| p.updated_at.into()),
        ("finalized_at = CASE id", |p| p.finalized_at.into()),
        ("version = CASE id", |p| p.version.into()),
    ];
    let mut sql = SqlBuilder::new("UPDATE payments SET ");
    for (n, (column, value)) in COLUMNS.iter().enumerate() {
        if n > 0 {
            sql.push(", ");
        }
        sql.push(column);
        for (_, next) in rows {
            sql.push(" WHEN ")
                .push_bind(next.id.as_str())
                .push(" THEN ")
                .push_bind(value(next));
        }
        sql.push(" END");
    }
    sql.push(" WHERE id IN (")
        .push_bind_list(rows.iter().map(|(_, next)| next.id.as_str()))
        .push(") AND version = CASE id");
    for (locked_version, next) in rows {
        sql.push(" WHEN ")
            .push_bind(next.id.as_str())
            .push(" THEN ")
            .push_bind(*locked_version);
    }
    sql.push(" END");
    sql.build()
}

/// Locks, in one statement, the payments that `checkout_request_ids` name, in
/// CheckoutRequestID order (byte order on every backend: `C`/`utf8mb4_bin`/`BINARY`), the same
/// order in which single callbacks lock them, so that instances cannot deadlock each other.
pub(crate) async fn by_checkout_request_ids_locked<C: Conn>(
    c: &mut C,
    checkout_request_ids: &[&str],
) -> DbResult<Vec<Payment>> {
    if checkout_request_ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut sql = SqlBuilder::new(concat!(
        "SELECT ",
        payment_columns!(),
        " FROM payments WHERE checkout_request_id IN ("
    ));
    sql.push_bind_list(checkout_request_ids.iter().copied())
        .push(") ORDER BY checkout_request_id")
        .push(C::DIALECT.for_update);
    let rows = c.fetch_all(sql.build()).await?;
    Ok(rows
        .iter()
        .map(records::payment)
        .collect::<Result<Vec<_>, _>>()?)
}

/// Timeline entries of several payments in one statement.
pub(crate) async fn insert_events_bulk<C: Conn>(
    c: &mut C,
    at: Millis,
    events: &[(&str, &NewPaymentEvent)],
) -> DbResult<()> {
    if let Some(stmt) = events_insert(at, events) {
        c.execute(stmt).await?;
    }
    Ok(())
}

/// [`insert_events_bulk`]'s statement (`None` for no events); it inserts every row or fails.
pub(crate) fn events_insert(at: Millis, events: &[(&str, &NewPaymentEvent)]) -> Option<Stmt> {
    if events.is_empty() {
        return None;
    }
    let mut sql = SqlBuilder::new(
        "INSERT INTO payment_events (payment_id, occurred_at, kind, detail) VALUES ",
    );
    for (i, (payment_id, event)) in events.iter().enumerate() {
        sql.push(if i == 0 { "(" } else { ", (" })
            .push_bind(*payment_id)
            .push(", ")
            .push_bind(at)
            .push(", ")
            .push_bind(&event.kind)
            .push(", ")
            .push_bind(&event.detail)
            .push(")");
    }
    Some(sql.build())
}

/// The row after `update`, computed from the locked row (pure: no I/O).
pub(crate) fn updated(current: &Payment, update: &PaymentUpdate, now: Millis) -> Payment {
    let mut next = current.clone();
    update_in_place(&mut next, update, now);
    next
}

/// [`updated`] in place (a batch of callbacks changes its locked payments without copying them).
pub(crate) fn update_in_place(payment: &mut Payment, update: &PaymentUpdate, now: Millis) {
    if let Some(t) = &update.transition {
        t.apply(payment.fields_mut(), now);
    }
    if update.count_query {
        payment.query_attempts = payment.query_attempts.saturating_add(1);
    }
    match update.schedule {
        CheckSchedule::Keep => {}
        CheckSchedule::At(at) => payment.next_check_at = Some(at),
        CheckSchedule::Clear => payment.next_check_at = None,
    }
    payment.updated_at = now;
    payment.version += 1;
}

pub(crate) async fn insert_event<C: Conn>(
    c: &mut C,
    payment_id: &str,
    at: Millis,
    event: &NewPaymentEvent,
) -> DbResult<()> {
    c.execute(
        Stmt::new("INSERT INTO payment_events (payment_id, occurred_at, kind, detail) VALUES ($1, $2, $3, $4)")
            .bind(payment_id)
            .bind(at)
            .bind(&event.kind)
            .bind(&event.detail),
    )
    .await?;
    Ok(())
}

pub(crate) async fn events<C: Conn>(c: &mut C, payment_id: &str) -> DbResult<Vec<PaymentEvent>> {
    let rows = c
        .fetch_all(
            Stmt::new(
                "SELECT id, payment_id, occurred_at, kind, detail FROM payment_events \
                 WHERE payment_id = $1 ORDER BY id",
            )
            .bind(payment_id),
        )
        .await?;
    Ok(rows
        .iter()
        .map(records::payment_event)
        .collect::<Result<_, _>>()?)
}

pub(crate) async fn list<C: Conn>(
    c: &mut C,
    filter: &PaymentFilter,
    page: &PageRequest,
) -> DbResult<Page<Payment>> {
    let keyset = Keyset::new(page)?;
    let rows = c.fetch_all(list_query(filter, &keyset)).await?;
    let items = rows
        .iter()
        .map(records::payment)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(keyset.page(items, |p| &p.id))
}

/// [`list`]'s statement.
pub(crate) fn list_query(filter: &PaymentFilter, keyset: &Keyset) -> Stmt {
    let mut q = SqlBuilder::new(concat!(
        "SELECT ",
        payment_columns!(),
        " FROM payments WHERE 1 = 1"
    ));
    if let Some(status) = filter.status {
        q.push(" AND status = ").push_bind(status.as_str());
    }
    if let Some(phone) = &filter.phone {
        q.push(" AND phone = ").push_bind(phone);
    }
    if let Some(reference) = &filter.reference {
        q.push(" AND reference = ").push_bind(reference);
    }
    if let Some(receipt) = &filter.receipt {
        q.push(" AND mpesa_receipt_number = ").push_bind(receipt);
    }
    if let Some(link) = &filter.payment_link_id {
        q.push(" AND payment_link_id = ").push_bind(link);
    }
    if let Some(needs_review) = filter.needs_review {
        // Spelt as the partial index's predicate, and not a parameter: PostgreSQL and SQLite use
        // ix_payments_needs_review_id only when the query visibly asks for held payments.
        q.push(if needs_review {
            " AND needs_review"
        } else {
            " AND NOT needs_review"
        });
    }
    if let Some(channel) = filter.channel {
        q.push(" AND channel = ").push_bind(channel.as_str());
    }
    if let Some(from) = filter.created_from {
        q.push(" AND created_at >= ").push_bind(from);
    }
    if let Some(to) = filter.created_to {
        q.push(" AND created_at < ").push_bind(to);
    }
    if let Some(search) = filter
        .search
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        q.push(" AND (id = ").push_bind(search);
        q.push(" OR phone = ").push_bind(search);
        q.push(" OR reference = ").push_bind(search);
        q.push(" OR mpesa_receipt_number = ").push_bind(search);
        q.push(" OR checkout_request_id = ").push_bind(search);
        q.push(" OR reference LIKE ")
            .push_bind(like_prefix(search))
            .push(" ESCAPE '!')");
    }
    if let Some(before) = &keyset.before_id {
        q.push(" AND id < ").push_bind(before);
    }
    q.push(" ORDER BY id DESC LIMIT ")
        .push_bind(keyset.fetch_limit());
    q.build()
}

/// `text%` with LIKE's wildcards in `text` escaped (escape character `!`: a backslash means
/// different things in MySQL and standard SQL string literals).
fn like_prefix(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 1);
    for ch in text.chars() {
        if matches!(ch, '!' | '%' | '_') {
            out.push('!');
        }
        out.push(ch);
    }
    out.push('%');
    out
}

/// Open payments whose check is due, soonest first. The statuses are those of the predicate of
/// the partial index ix_payments_open_next_check_at, which the query uses only if they match.
pub(crate) const DUE_CHECKS: &str = concat!(
    "SELECT ",
    payment_columns!(),
    " FROM payments WHERE status IN ('initiated', 'pending') AND next_check_at <= $1 \
     ORDER BY next_check_at LIMIT $2"
);

/// Claims open payments whose check is due, moving their `next_check_at` to `lease_until`.
pub(crate) async fn claim_due_checks<C: Conn>(
    c: &mut C,
    now: Millis,
    lease_until: Millis,
    limit: u32,
) -> DbResult<Vec<Payment>> {
    let rows = c
        .fetch_all(
            Stmt::with_suffix(DUE_CHECKS, C::DIALECT.for_update_skip_locked)
                .bind(now)
                .bind(limit.max(1)),
        )
        .await?;
    let mut payments = rows
        .iter()
        .map(records::payment)
        .collect::<Result<Vec<_>, _>>()?;
    if payments.is_empty() {
        return Ok(payments);
    }
    let mut q = SqlBuilder::new("UPDATE payments SET next_check_at = ");
    q.push_bind(lease_until)
        .push(", version = version + 1 WHERE id IN (");
    q.push_bind_list(payments.iter().map(|p| p.id.as_str()))
        .push(")");
    c.execute(q.build()).await?;
    for p in &mut payments {
        p.next_check_at = Some(lease_until);
        p.version += 1;
    }
    Ok(payments)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mpesa_domain::{
        Amount, Msisdn, ResultCode, ReviewChange, ReviewReason, Transition, TransitionKind,
    };

    fn payment() -> Payment {
        Payment {
            id: "pay_1".into(),
            status: PaymentStatus::Pending,
            phone: Some(Msisdn::parse("0708374149").unwrap()),
            amount: Amount::from_stored(100),
            reference: "INV1".into(),
            description: "d".into(),
            customer_email: None,
            telegram_chat_id: None,
            metadata: None,
            checkout_request_id: Some("ws_CO_1".into()),
            merchant_request_id: Some("m1".into()),
            mpesa_receipt_number: None,
            result_code: None,
            result_desc: None,
            transaction_date: None,
            needs_review: false,
            review_reason: None,
            api_key_id: None,
            source: PaymentSource::Api,
            query_attempts: 2,
            next_check_at: Some(5),
            created_at: 1,
            updated_at: 1,
            finalized_at: None,
            version: 3,
            payment_link_id: None,
            customer_language: None,
            channel: PaymentChannel::Stk,
            business_short_code: None,
            payer_name: None,
            payer_msisdn: None,
            recovered_by: None,
        }
    }

    fn transition(status: PaymentStatus) -> Transition {
        Transition {
            kind: TransitionKind::Callback,
            status,
            checkout_request_id: None,
            merchant_request_id: None,
            result_code: Some(ResultCode::from("0")),
            result_desc: Some("ok".into()),
            mpesa_receipt_number: Some("R1".into()),
            transaction_date_ms: Some(7),
            review: ReviewChange::Keep,
            notify: None,
            note: None,
        }
    }

    #[test]
    fn update_sets_given_fields_and_keeps_the_rest() {
        let mut u = PaymentUpdate::new(Some(transition(PaymentStatus::Completed)));
        u.count_query = true;
        u.schedule = CheckSchedule::Clear;
        let next = updated(&payment(), &u, 50);
        assert_eq!(next.status, PaymentStatus::Completed);
        assert_eq!(next.checkout_request_id.as_deref(), Some("ws_CO_1"));
        assert_eq!(next.mpesa_receipt_number.as_deref(), Some("R1"));
        assert_eq!(next.result_code.as_deref(), Some("0"));
        assert_eq!(next.transaction_date, Some(7));
        assert_eq!(
            (next.finalized_at, next.updated_at, next.version),
            (Some(50), 50, 4)
        );
        assert_eq!((next.query_attempts, next.next_check_at), (3, None));
        // A later change keeps the first finalisation time.
        let again = updated(
            &next,
            &PaymentUpdate::new(Some(transition(PaymentStatus::Completed))),
            90,
        );
        assert_eq!(again.finalized_at, Some(50));
    }

    #[test]
    fn review_changes() {
        let mut t = transition(PaymentStatus::Pending);
        t.review = ReviewChange::Hold(ReviewReason::PhoneMismatch);
        let held = updated(&payment(), &PaymentUpdate::new(Some(t.clone())), 9);
        assert!(held.needs_review);
        assert_eq!(
            held.review_reason,
            Some(ReviewReason::PhoneMismatch.describe())
        );
        assert_eq!(held.finalized_at, None);
        t.review = ReviewChange::Clear;
        let cleared = updated(&held, &PaymentUpdate::new(Some(t)), 10);
        assert!(!cleared.needs_review);
        assert_eq!(cleared.review_reason, None);
    }

    #[test]
    fn the_timeline_entry_is_named_by_the_transition_or_what_was_observed() {
        let mut u = PaymentUpdate::new(Some(transition(PaymentStatus::Completed)));
        assert_eq!(u.timeline_entry(), None, "no detail, no entry");
        u.event = Some(r#"{"callback_id":"cb_1"}"#.into());
        u.observed = Some(TransitionKind::Query);
        assert_eq!(
            u.timeline_entry(),
            Some(NewPaymentEvent {
                kind: "callback".into(),
                detail: r#"{"callback_id":"cb_1"}"#.into(),
            }),
            "a transition names its own entry"
        );
        let mut still = PaymentUpdate::new(None);
        still.event = Some("{}".into());
        assert_eq!(still.timeline_entry(), None, "nothing to name it by");
        still.observed = Some(TransitionKind::Query);
        assert_eq!(
            still.timeline_entry().map(|e| e.kind).as_deref(),
            Some("query")
        );
    }

    #[test]
    fn like_wildcards_are_escaped() {
        assert_eq!(like_prefix("a%b_c!"), "a!%b!_c!!%");
    }
}
