//! Money going out: initiator requests and their results, refunds, payouts and the daily payout
//! limit. Every write that goes with another (a state change, its timeline entry, its outbox rows,
//! the raw callback that caused it) is in the caller's one transaction.

use mpesa_domain::{RequestKind, RequestStatus};

use crate::Millis;
use crate::cursor::Keyset;
use crate::db::{Conn, RowExt, SqlBuilder, Stmt};
use crate::error::{DbResult, StorageError};
use crate::model::*;
use crate::money_out::*;
use crate::store::payments::{self, Lock};
use crate::store::{MAX_KEY_LEN, check_len, outbox};

// ---- idempotency ---------------------------------------------------------------------------------

/// What an idempotency claim found when the key was not ours.
pub(crate) enum ClaimedBefore {
    KeyReused,
    Replay(StoredResponse),
    InProgress { id: String },
}

/// Claims `claim` for the record `new_id` (same table and rule as payments): `None` when the
/// key is ours now.
pub(crate) async fn claim_key<C: Conn>(
    c: &mut C,
    claim: &IdempotencyClaim,
    new_id: &str,
) -> DbResult<Option<ClaimedBefore>> {
    check_len("idempotency key", &claim.key, MAX_KEY_LEN)?;
    c.execute(
        Stmt::new(C::DIALECT.insert_idempotency_claim)
            .bind(&claim.api_key_id)
            .bind(&claim.key)
            .bind(&claim.request_hash)
            .bind(new_id)
            .bind(claim.created_at),
    )
    .await?;
    let row = c
        .fetch_one(
            Stmt::new(
                "SELECT request_hash, payment_id, response_status, response_body \
                 FROM idempotency_keys WHERE api_key_id = $1 AND idem_key = $2",
            )
            .bind(&claim.api_key_id)
            .bind(&claim.key),
        )
        .await?;
    let owner = row.text("payment_id")?;
    if owner == new_id {
        return Ok(None);
    }
    if row.text("request_hash")? != claim.request_hash {
        return Ok(Some(ClaimedBefore::KeyReused));
    }
    Ok(Some(
        match (
            row.opt_int32("response_status")?,
            row.opt_text("response_body")?,
        ) {
            (Some(status), Some(body)) => ClaimedBefore::Replay(StoredResponse {
                status: u16::try_from(status).map_err(|_| {
                    StorageError::Corrupt(format!("stored response status {status}"))
                })?,
                body,
            }),
            _ => ClaimedBefore::InProgress { id: owner },
        },
    ))
}

// ---- timelines ------------------------------------------------------------------------------------

pub(crate) async fn insert_event<C: Conn>(
    c: &mut C,
    subject_id: &str,
    at: Millis,
    event: &NewMoneyOutEvent,
) -> DbResult<()> {
    c.execute(
        Stmt::new(
            "INSERT INTO money_out_events (subject_id, occurred_at, kind, detail) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(subject_id)
        .bind(at)
        .bind(&event.kind)
        .bind(&event.detail),
    )
    .await?;
    Ok(())
}

pub(crate) async fn events<C: Conn>(c: &mut C, subject_id: &str) -> DbResult<Vec<MoneyOutEvent>> {
    let rows = c
        .fetch_all(
            Stmt::new(
                "SELECT subject_id, occurred_at, kind, detail FROM money_out_events \
                 WHERE subject_id = $1 ORDER BY id",
            )
            .bind(subject_id),
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(MoneyOutEvent {
                subject_id: r.text("subject_id")?,
                occurred_at: r.int("occurred_at")?,
                kind: r.text("kind")?,
                detail: r.text("detail")?,
            })
        })
        .collect::<crate::Result<_>>()
        .map_err(Into::into)
}

// ---- initiator requests ------------------------------------------------------------------------

const REQUEST_COLUMNS: &str = "id, kind, purpose, owner_id, originator_conversation_id, \
    conversation_id, status, params, result_code, result_desc, receipt, result, needs_review, \
    attempts, next_check_at, owner_notified_at, created_at, updated_at, finalized_at, version";

fn request<R: RowExt>(r: &R) -> crate::Result<InitiatorRequest> {
    let kind = r.text("kind")?;
    let status = r.text("status")?;
    Ok(InitiatorRequest {
        id: r.text("id")?,
        kind: RequestKind::parse(&kind)
            .ok_or_else(|| StorageError::Corrupt(format!("request kind {kind}")))?,
        purpose: r.text("purpose")?,
        owner_id: r.opt_text("owner_id")?,
        originator_conversation_id: r.opt_text("originator_conversation_id")?,
        conversation_id: r.opt_text("conversation_id")?,
        status: RequestStatus::parse(&status)
            .ok_or_else(|| StorageError::Corrupt(format!("request status {status}")))?,
        params: r.text("params")?,
        result_code: r.opt_text("result_code")?,
        result_desc: r.opt_text("result_desc")?,
        receipt: r.opt_text("receipt")?,
        result: r.opt_text("result")?,
        needs_review: r.flag("needs_review")?,
        attempts: r.int32("attempts")?,
        next_check_at: r.opt_int("next_check_at")?,
        owner_notified_at: r.opt_int("owner_notified_at")?,
        created_at: r.int("created_at")?,
        updated_at: r.int("updated_at")?,
        finalized_at: r.opt_int("finalized_at")?,
        version: r.int("version")?,
    })
}

fn select_requests(where_clause: &'static str, lock: Lock, dialect_lock: &'static str) -> Stmt {
    let sql = format!("SELECT {REQUEST_COLUMNS} FROM initiator_requests WHERE {where_clause}");
    let sql = match lock {
        Lock::ForUpdate => format!("{sql}{dialect_lock}"),
        Lock::None => sql,
    };
    Stmt {
        sql: sql.into(),
        args: Vec::new(),
    }
}

pub(crate) async fn insert_request<C: Conn>(
    c: &mut C,
    new: &NewInitiatorRequest,
    next_check_at: Option<Millis>,
) -> DbResult<InitiatorRequest> {
    check_len("request id", &new.id, 64)?;
    if let Some(ocid) = &new.originator_conversation_id {
        check_len("OriginatorConversationID", ocid, 128)?;
    }
    c.execute(
        Stmt::new(
            "INSERT INTO initiator_requests (id, kind, purpose, owner_id, \
             originator_conversation_id, status, params, needs_review, attempts, next_check_at, \
             created_at, updated_at, version) \
             VALUES ($1, $2, $3, $4, $5, 'sending', $6, $7, 0, $8, $9, $9, 1)",
        )
        .bind(&new.id)
        .bind(new.kind.as_str())
        .bind(&new.purpose)
        .bind(&new.owner_id)
        .bind(&new.originator_conversation_id)
        .bind(&new.params)
        .bind(false)
        .bind(next_check_at)
        .bind(new.created_at),
    )
    .await?;
    insert_event(
        c,
        &new.id,
        new.created_at,
        &NewMoneyOutEvent {
            kind: "stored".into(),
            detail: serde_json::json!({
                "kind": new.kind.as_str(),
                "purpose": new.purpose,
                "owner_id": new.owner_id,
                "originator_conversation_id": new.originator_conversation_id,
            })
            .to_string(),
        },
    )
    .await?;
    request_by_id(c, &new.id, Lock::None)
        .await?
        .ok_or_else(|| StorageError::NotFound.into())
}

pub(crate) async fn request_by_id<C: Conn>(
    c: &mut C,
    id: &str,
    lock: Lock,
) -> DbResult<Option<InitiatorRequest>> {
    let stmt = select_requests("id = $1", lock, C::DIALECT.for_update).bind(id);
    Ok(c.fetch_optional(stmt)
        .await?
        .map(|r| request(&r))
        .transpose()?)
}

/// The request a result names: by OriginatorConversationID first (ours, or Daraja's as
/// recorded), then by ConversationID.
pub(crate) async fn request_by_ids<C: Conn>(
    c: &mut C,
    ids: &InitiatorCallbackIds,
    lock: Lock,
) -> DbResult<Option<InitiatorRequest>> {
    if let Some(ocid) = ids
        .originator_conversation_id
        .as_deref()
        .filter(|s| !s.is_empty() && s.len() <= 128)
    {
        let stmt = select_requests(
            "originator_conversation_id = $1",
            lock,
            C::DIALECT.for_update,
        )
        .bind(ocid);
        if let Some(row) = c.fetch_optional(stmt).await? {
            return Ok(Some(request(&row)?));
        }
    }
    if let Some(cid) = ids
        .conversation_id
        .as_deref()
        .filter(|s| !s.is_empty() && s.len() <= 128)
    {
        let stmt = select_requests("conversation_id = $1", lock, C::DIALECT.for_update).bind(cid);
        if let Some(row) = c.fetch_optional(stmt).await? {
            return Ok(Some(request(&row)?));
        }
    }
    Ok(None)
}

pub(crate) async fn requests_for_owner<C: Conn>(
    c: &mut C,
    purpose: &str,
    owner_id: &str,
) -> DbResult<Vec<InitiatorRequest>> {
    let stmt = select_requests("purpose = $1 AND owner_id = $2 ORDER BY id", Lock::None, "")
        .bind(purpose)
        .bind(owner_id);
    Ok(c.fetch_all(stmt)
        .await?
        .iter()
        .map(request)
        .collect::<crate::Result<_>>()?)
}

/// Writes `update` onto the locked `current` row; returns the row as written. An update that
/// books Daraja's receipt ([`InitiatorUpdate::if_receipt_held`]) is checked first against the
/// receipts people recorded by hand on other requests.
pub(crate) async fn apply_request_update<C: Conn>(
    c: &mut C,
    current: &InitiatorRequest,
    update: &InitiatorUpdate,
    now: Millis,
) -> DbResult<InitiatorRequest> {
    if let Some(guard) = &update.if_receipt_held
        && let Some(receipt) = update
            .transition
            .as_ref()
            .filter(|t| t.status == RequestStatus::Completed)
            .and_then(|t| t.receipt.as_deref())
            .filter(|r| current.receipt.as_deref() != Some(*r))
    {
        // Takes its turn with settlements by hand: whichever of the two comes second sees the
        // other's receipt (a settlement refuses a receipt recorded anywhere).
        settle_one_at_a_time(c).await?;
        if let Some(holder) = held_by_hand(c, receipt, &current.id).await? {
            let held = (guard.0)(current, &holder);
            return write_request_update(c, current, &held, now).await;
        }
    }
    write_request_update(c, current, update, now).await
}

/// The other request that moves money on which a person recorded `receipt` by hand, if any.
async fn held_by_hand<C: Conn>(
    c: &mut C,
    receipt: &str,
    except: &str,
) -> DbResult<Option<InitiatorRequest>> {
    let stmt = select_requests(
        "receipt = $1 AND id <> $2 AND kind IN ('b2c', 'reversal') ORDER BY id",
        Lock::None,
        "",
    )
    .bind(receipt)
    .bind(except);
    let rows = c.fetch_all(stmt).await?;
    for row in &rows {
        let r = request(row)?;
        if r.settled_by_hand() {
            return Ok(Some(r));
        }
    }
    Ok(None)
}

async fn write_request_update<C: Conn>(
    c: &mut C,
    current: &InitiatorRequest,
    update: &InitiatorUpdate,
    now: Millis,
) -> DbResult<InitiatorRequest> {
    let mut n = current.clone();
    if let Some(t) = &update.transition {
        n.status = t.status;
        if let Some(v) = &t.originator_conversation_id
            && n.originator_conversation_id.is_none()
        {
            n.originator_conversation_id = Some(v.clone());
        }
        if let Some(v) = &t.conversation_id {
            n.conversation_id = Some(v.clone());
        }
        if let Some(v) = &t.result_code {
            n.result_code = Some(v.as_str().to_owned());
        }
        if let Some(v) = &t.result_desc {
            n.result_desc = Some(v.clone());
        }
        if let Some(v) = &t.receipt {
            n.receipt = Some(v.clone());
        }
        if t.hold {
            n.needs_review = true;
        }
        if t.clear_hold {
            n.needs_review = false;
        }
        if n.finalized_at.is_none() && t.status.is_final() {
            n.finalized_at = Some(now);
        }
        // Final again with Daraja's answer (a question answered after it was given up): its
        // owner is told again, by the resolver too should this process stop first.
        if t.notify_owner && current.status.is_final() {
            n.owner_notified_at = None;
            // Final when the answer came, not when it was given up (a balance's `answered_at`).
            n.finalized_at = Some(now);
        }
    }
    if let Some(r) = &update.result {
        n.result = Some(r.clone());
    }
    if let Some(a) = update.attempts {
        n.attempts = a;
    }
    if let Some(next) = update.next_check_at {
        n.next_check_at = next;
    }
    if n.status.is_final() || n.needs_review {
        n.next_check_at = None;
    }
    n.updated_at = now;
    n.version += 1;
    let changed = c
        .execute(
            Stmt::new(
                "UPDATE initiator_requests SET status = $1, originator_conversation_id = $2, \
                 conversation_id = $3, result_code = $4, result_desc = $5, receipt = $6, \
                 result = $7, needs_review = $8, attempts = $9, next_check_at = $10, \
                 updated_at = $11, finalized_at = $12, version = $13, owner_notified_at = $14 \
                 WHERE id = $15 AND version = $16",
            )
            .bind(n.status.as_str())
            .bind(&n.originator_conversation_id)
            .bind(&n.conversation_id)
            .bind(&n.result_code)
            .bind(&n.result_desc)
            .bind(&n.receipt)
            .bind(&n.result)
            .bind(n.needs_review)
            .bind(n.attempts)
            .bind(n.next_check_at)
            .bind(n.updated_at)
            .bind(n.finalized_at)
            .bind(n.version)
            .bind(n.owner_notified_at)
            .bind(&n.id)
            .bind(current.version),
        )
        .await?;
    if changed == 0 {
        return Err(StorageError::Database(format!(
            "initiator request {} changed under its lock",
            n.id
        ))
        .into());
    }
    if let Some(event) = &update.event {
        insert_event(c, &n.id, now, event).await?;
    }
    outbox::insert_events(c, &update.outbox).await?;
    Ok(n)
}

pub(crate) async fn update_request<C: Conn>(
    c: &mut C,
    id: &str,
    now: Millis,
    decide: DecideInitiator<'_>,
) -> DbResult<Option<(InitiatorRequest, InitiatorUpdate)>> {
    let current = request_by_id(c, id, Lock::ForUpdate)
        .await?
        .ok_or(StorageError::NotFound)?;
    let Some(update) = decide(&current) else {
        return Ok(None);
    };
    let written = apply_request_update(c, &current, &update, now).await?;
    Ok(Some((written, update)))
}

/// Stores a result or timeout callback raw and applies it to the request it names, in one
/// transaction.
pub(crate) async fn ingest_callback<C: Conn>(
    c: &mut C,
    raw: &IncomingCallback,
    ids: &InitiatorCallbackIds,
    now: Millis,
    decide: DecideInitiatorCallback<'_>,
) -> DbResult<IngestedInitiatorCallback> {
    let current = request_by_ids(c, ids, Lock::ForUpdate).await?;
    let (outcome, update) = decide(current.as_ref());
    let (request, became_final) = match (current, update) {
        (Some(current), Some(update)) => {
            let was_final = current.status.is_final();
            let written = apply_request_update(c, &current, &update, now).await?;
            // Or final again, with Daraja's answer to a question given up: told again.
            let told_again = update.transition.as_ref().is_some_and(|t| t.notify_owner);
            let became_final = (!was_final || told_again) && written.status.is_final();
            (Some(written), became_final)
        }
        (current, _) => (current, false),
    };
    let named = ids
        .conversation_id
        .as_deref()
        .filter(|s| !s.is_empty())
        .or(ids
            .originator_conversation_id
            .as_deref()
            .filter(|s| !s.is_empty()));
    crate::store::received_callbacks::insert_one(c, raw, named, outcome).await?;
    Ok(IngestedInitiatorCallback {
        outcome,
        request,
        became_final,
    })
}

/// Applies the results and notices stored as `unmatched` that name this request (they came
/// before its acknowledgement was recorded), oldest first, in one transaction. Returns the
/// request as written when one of them made it final.
pub(crate) async fn rematch<C: Conn>(
    c: &mut C,
    request_id: &str,
    now: Millis,
    decide: RedecideInitiatorCallback<'_>,
) -> DbResult<Option<InitiatorRequest>> {
    let Some(mut current) = request_by_id(c, request_id, Lock::ForUpdate).await? else {
        return Ok(None);
    };
    let named: Vec<&str> = [
        current.conversation_id.as_deref(),
        current.originator_conversation_id.as_deref(),
    ]
    .into_iter()
    .flatten()
    .collect();
    let stored = crate::store::received_callbacks::unmatched_initiator(c, &named).await?;
    let was_final = current.status.is_final();
    for raw in stored {
        let (outcome, update) = decide(&raw, &current);
        if let Some(update) = update {
            current = apply_request_update(c, &current, &update, now).await?;
        }
        crate::store::received_callbacks::set_outcome(c, &raw.id, outcome).await?;
    }
    Ok((!was_final && current.status.is_final()).then_some(current))
}

/// Claims open requests whose check is due, moving their `next_check_at` to `lease_until`.
pub(crate) async fn claim_due_requests<C: Conn>(
    c: &mut C,
    now: Millis,
    lease_until: Millis,
    limit: u32,
) -> DbResult<Vec<InitiatorRequest>> {
    let sql = format!(
        "SELECT {REQUEST_COLUMNS} FROM initiator_requests \
         WHERE status IN ('sending', 'accepted', 'unknown') AND next_check_at <= $1 \
         ORDER BY next_check_at LIMIT $2{}",
        C::DIALECT.for_update_skip_locked
    );
    let rows = c
        .fetch_all(
            Stmt {
                sql: sql.into(),
                args: Vec::new(),
            }
            .bind(now)
            .bind(limit.max(1)),
        )
        .await?;
    let mut due = rows
        .iter()
        .map(request)
        .collect::<crate::Result<Vec<_>>>()?;
    if due.is_empty() {
        return Ok(due);
    }
    let mut q = SqlBuilder::new("UPDATE initiator_requests SET next_check_at = ");
    q.push_bind(lease_until)
        .push(", version = version + 1 WHERE id IN (");
    q.push_bind_list(due.iter().map(|r| r.id.as_str()))
        .push(")");
    c.execute(q.build()).await?;
    for r in &mut due {
        r.next_check_at = Some(lease_until);
        r.version += 1;
    }
    Ok(due)
}

/// Final requests whose owner has not been told yet (a crash between the two, or an owner that
/// failed), oldest first.
pub(crate) async fn unnotified<C: Conn>(
    c: &mut C,
    finalized_before: Millis,
    limit: u32,
) -> DbResult<Vec<InitiatorRequest>> {
    let sql = format!(
        "SELECT {REQUEST_COLUMNS} FROM initiator_requests \
         WHERE owner_notified_at IS NULL AND finalized_at IS NOT NULL AND finalized_at <= $1 \
         ORDER BY finalized_at LIMIT $2"
    );
    let rows = c
        .fetch_all(
            Stmt {
                sql: sql.into(),
                args: Vec::new(),
            }
            .bind(finalized_before)
            .bind(limit.max(1)),
        )
        .await?;
    Ok(rows.iter().map(request).collect::<crate::Result<_>>()?)
}

pub(crate) async fn mark_notified<C: Conn>(c: &mut C, id: &str, now: Millis) -> DbResult<()> {
    c.execute(
        Stmt::new(
            "UPDATE initiator_requests SET owner_notified_at = $1 \
             WHERE id = $2 AND owner_notified_at IS NULL",
        )
        .bind(now)
        .bind(id),
    )
    .await?;
    Ok(())
}

// ---- refunds -------------------------------------------------------------------------------------

const REFUND_COLUMNS: &str = "id, payment_id, status, reason, amount, payment_receipt, request_id, \
    result_code, result_desc, reversal_receipt, requested_by, source, api_key_id, created_at, \
    updated_at, finalized_at, version";

fn refund<R: RowExt>(r: &R) -> crate::Result<Refund> {
    let status = r.text("status")?;
    Ok(Refund {
        id: r.text("id")?,
        payment_id: r.text("payment_id")?,
        status: RefundStatus::parse(&status)
            .ok_or_else(|| StorageError::Corrupt(format!("refund status {status}")))?,
        reason: r.text("reason")?,
        amount: r.int("amount")?,
        payment_receipt: r.text("payment_receipt")?,
        request_id: r.opt_text("request_id")?,
        result_code: r.opt_text("result_code")?,
        result_desc: r.opt_text("result_desc")?,
        reversal_receipt: r.opt_text("reversal_receipt")?,
        requested_by: r.text("requested_by")?,
        source: r.text("source")?,
        api_key_id: r.opt_text("api_key_id")?,
        created_at: r.int("created_at")?,
        updated_at: r.int("updated_at")?,
        finalized_at: r.opt_int("finalized_at")?,
        version: r.int("version")?,
    })
}

pub(crate) async fn refund_by_id<C: Conn>(
    c: &mut C,
    id: &str,
    lock: Lock,
) -> DbResult<Option<Refund>> {
    let mut sql = format!("SELECT {REFUND_COLUMNS} FROM refunds WHERE id = $1");
    if matches!(lock, Lock::ForUpdate) {
        sql.push_str(C::DIALECT.for_update);
    }
    let stmt = Stmt {
        sql: sql.into(),
        args: Vec::new(),
    }
    .bind(id);
    Ok(c.fetch_optional(stmt)
        .await?
        .map(|r| refund(&r))
        .transpose()?)
}

pub(crate) async fn refunds_for_payment<C: Conn>(
    c: &mut C,
    payment_id: &str,
) -> DbResult<Vec<Refund>> {
    let stmt = Stmt {
        sql: format!("SELECT {REFUND_COLUMNS} FROM refunds WHERE payment_id = $1 ORDER BY id")
            .into(),
        args: Vec::new(),
    }
    .bind(payment_id);
    Ok(c.fetch_all(stmt)
        .await?
        .iter()
        .map(refund)
        .collect::<crate::Result<_>>()?)
}

/// Pending refunds last changed in `changed` with no request of `purpose` stored for them.
pub(crate) async fn refunds_without_request<C: Conn>(
    c: &mut C,
    purpose: &str,
    changed: (Millis, Millis),
    limit: u32,
) -> DbResult<Vec<Refund>> {
    let rows =
        pending_without_request(c, "refunds", REFUND_COLUMNS, purpose, changed, limit).await?;
    Ok(rows.iter().map(refund).collect::<crate::Result<_>>()?)
}

/// The rows of `table` (refunds, payouts) `pending` and last changed in `changed` (from, up to;
/// both included) for which no request of `purpose` is stored.
async fn pending_without_request<C: Conn>(
    c: &mut C,
    table: &'static str,
    columns: &'static str,
    purpose: &str,
    (since, before): (Millis, Millis),
    limit: u32,
) -> DbResult<Vec<C::Row>> {
    let stmt = Stmt {
        sql: format!(
            "SELECT {columns} FROM {table} WHERE status = 'pending' AND updated_at >= $1 \
             AND updated_at <= $2 AND NOT EXISTS (SELECT 1 FROM initiator_requests q \
             WHERE q.purpose = $3 AND q.owner_id = {table}.id) ORDER BY updated_at LIMIT $4"
        )
        .into(),
        args: Vec::new(),
    }
    .bind(since)
    .bind(before)
    .bind(purpose)
    .bind(limit.max(1));
    c.fetch_all(stmt).await
}

pub(crate) async fn create_refund<C: Conn>(
    c: &mut C,
    new: &NewRefund,
    claim: Option<&IdempotencyClaim>,
    decide: DecideRefund<'_>,
) -> DbResult<CreateRefundResult> {
    if let Some(claim) = claim {
        match claim_key(c, claim, &new.id).await? {
            None => {}
            Some(ClaimedBefore::KeyReused) => return Ok(CreateRefundResult::KeyReused),
            Some(ClaimedBefore::Replay(r)) => return Ok(CreateRefundResult::Replay(r)),
            Some(ClaimedBefore::InProgress { id }) => {
                return Ok(CreateRefundResult::InProgress { id });
            }
        }
    }
    // The payment's row lock orders concurrent refunds of one payment; the unique
    // active_payment_id is the rule's last word.
    let Some(payment) = payments::by_id(c, &new.payment_id, Lock::ForUpdate).await? else {
        return Ok(CreateRefundResult::Refused(RefundRefusal::PaymentNotFound));
    };
    let active = refunds_for_payment(c, &new.payment_id)
        .await?
        .into_iter()
        .rev()
        .find(|r| r.status != RefundStatus::Failed);
    let (amount, receipt) = match decide(&payment, active.as_ref()) {
        Ok(v) => v,
        Err(refusal) => {
            if claim.is_some() {
                // Nothing was created: the key stays free for a corrected request.
                release_claim(c, claim, &new.id).await?;
            }
            return Ok(CreateRefundResult::Refused(refusal));
        }
    };
    check_len("refund id", &new.id, 64)?;
    c.execute(
        Stmt::new(
            "INSERT INTO refunds (id, payment_id, active_payment_id, status, reason, amount, \
             payment_receipt, requested_by, source, api_key_id, created_at, updated_at, version) \
             VALUES ($1, $2, $2, 'pending', $3, $4, $5, $6, $7, $8, $9, $9, 1)",
        )
        .bind(&new.id)
        .bind(&new.payment_id)
        .bind(&new.reason)
        .bind(amount)
        .bind(&receipt)
        .bind(&new.requested_by)
        .bind(&new.source)
        .bind(&new.api_key_id)
        .bind(new.created_at),
    )
    .await?;
    let detail = serde_json::json!({
        "refund_id": new.id,
        "reason": new.reason,
        "requested_by": new.requested_by,
        "amount": amount,
    })
    .to_string();
    insert_event(
        c,
        &new.id,
        new.created_at,
        &NewMoneyOutEvent {
            kind: "refund_requested".into(),
            detail: detail.clone(),
        },
    )
    .await?;
    payments::insert_events_bulk(
        c,
        new.created_at,
        &[(
            new.payment_id.as_str(),
            &NewPaymentEvent {
                kind: "refund_requested".into(),
                detail,
            },
        )],
    )
    .await?;
    let created = refund_by_id(c, &new.id, Lock::None)
        .await?
        .ok_or(StorageError::NotFound)?;
    Ok(CreateRefundResult::Created(Box::new(created)))
}

async fn release_claim<C: Conn>(
    c: &mut C,
    claim: Option<&IdempotencyClaim>,
    owner: &str,
) -> DbResult<()> {
    if let Some(claim) = claim {
        c.execute(
            Stmt::new(
                "DELETE FROM idempotency_keys WHERE api_key_id = $1 AND idem_key = $2 \
                 AND payment_id = $3",
            )
            .bind(&claim.api_key_id)
            .bind(&claim.key)
            .bind(owner),
        )
        .await?;
    }
    Ok(())
}

pub(crate) async fn update_refund<C: Conn>(
    c: &mut C,
    id: &str,
    now: Millis,
    decide: DecideRefundUpdate<'_>,
) -> DbResult<Option<(Refund, RefundUpdate)>> {
    let current = refund_by_id(c, id, Lock::ForUpdate)
        .await?
        .ok_or(StorageError::NotFound)?;
    let Some(update) = decide(&current) else {
        return Ok(None);
    };
    let mut n = current.clone();
    if let Some(s) = update.status {
        n.status = s;
        if s != RefundStatus::Pending && n.finalized_at.is_none() {
            n.finalized_at = Some(now);
        }
    }
    if let Some(v) = &update.request_id {
        n.request_id = Some(v.clone());
    }
    if let Some(v) = &update.result_code {
        n.result_code = Some(v.clone());
    }
    if let Some(v) = &update.result_desc {
        n.result_desc = Some(v.clone());
    }
    if let Some(v) = &update.reversal_receipt {
        n.reversal_receipt = Some(v.clone());
    }
    n.updated_at = now;
    n.version += 1;
    let active = (n.status != RefundStatus::Failed).then(|| n.payment_id.clone());
    c.execute(
        Stmt::new(
            "UPDATE refunds SET status = $1, active_payment_id = $2, request_id = $3, \
             result_code = $4, result_desc = $5, reversal_receipt = $6, updated_at = $7, \
             finalized_at = $8, version = $9 WHERE id = $10",
        )
        .bind(n.status.as_str())
        .bind(active)
        .bind(&n.request_id)
        .bind(&n.result_code)
        .bind(&n.result_desc)
        .bind(&n.reversal_receipt)
        .bind(n.updated_at)
        .bind(n.finalized_at)
        .bind(n.version)
        .bind(&n.id),
    )
    .await?;
    if let Some(event) = &update.event {
        insert_event(c, &n.id, now, event).await?;
        payments::insert_events_bulk(
            c,
            now,
            &[(
                n.payment_id.as_str(),
                &NewPaymentEvent {
                    kind: event.kind.clone(),
                    detail: event.detail.clone(),
                },
            )],
        )
        .await?;
    }
    outbox::insert_events(c, &update.outbox).await?;
    Ok(Some((n, update)))
}

// ---- payouts -------------------------------------------------------------------------------------

const PAYOUT_COLUMNS: &str = "id, status, phone, amount, command, remarks, occasion, requested_by, \
    source, api_key_id, decided_by, decided_at, decision_note, request_id, receipt, recipient_name, \
    utility_balance_cents, result_code, result_desc, eat_day, created_at, updated_at, finalized_at, \
    version";

fn payout<R: RowExt>(r: &R) -> crate::Result<Payout> {
    let status = r.text("status")?;
    Ok(Payout {
        id: r.text("id")?,
        status: PayoutStatus::parse(&status)
            .ok_or_else(|| StorageError::Corrupt(format!("payout status {status}")))?,
        phone: r.text("phone")?,
        amount: r.int("amount")?,
        command: r.text("command")?,
        remarks: r.text("remarks")?,
        occasion: r.opt_text("occasion")?,
        requested_by: r.text("requested_by")?,
        source: r.text("source")?,
        api_key_id: r.opt_text("api_key_id")?,
        decided_by: r.opt_text("decided_by")?,
        decided_at: r.opt_int("decided_at")?,
        decision_note: r.opt_text("decision_note")?,
        request_id: r.opt_text("request_id")?,
        receipt: r.opt_text("receipt")?,
        recipient_name: r.opt_text("recipient_name")?,
        utility_balance_cents: r.opt_int("utility_balance_cents")?,
        result_code: r.opt_text("result_code")?,
        result_desc: r.opt_text("result_desc")?,
        eat_day: r.int("eat_day")?,
        created_at: r.int("created_at")?,
        updated_at: r.int("updated_at")?,
        finalized_at: r.opt_int("finalized_at")?,
        version: r.int("version")?,
    })
}

pub(crate) async fn payout_by_id<C: Conn>(
    c: &mut C,
    id: &str,
    lock: Lock,
) -> DbResult<Option<Payout>> {
    let mut sql = format!("SELECT {PAYOUT_COLUMNS} FROM payouts WHERE id = $1");
    if matches!(lock, Lock::ForUpdate) {
        sql.push_str(C::DIALECT.for_update);
    }
    let stmt = Stmt {
        sql: sql.into(),
        args: Vec::new(),
    }
    .bind(id);
    Ok(c.fetch_optional(stmt)
        .await?
        .map(|r| payout(&r))
        .transpose()?)
}

/// Pending payouts (approved, or needing no approval) last changed in `changed` with no request
/// of `purpose` stored for them.
pub(crate) async fn payouts_without_request<C: Conn>(
    c: &mut C,
    purpose: &str,
    changed: (Millis, Millis),
    limit: u32,
) -> DbResult<Vec<Payout>> {
    let rows =
        pending_without_request(c, "payouts", PAYOUT_COLUMNS, purpose, changed, limit).await?;
    Ok(rows.iter().map(payout).collect::<crate::Result<_>>()?)
}

/// Reserves `amount` of the day's limit: one conditional UPDATE, so that concurrent payouts (on
/// any instance) cannot both pass a check that only one of them fits.
async fn reserve<C: Conn>(c: &mut C, day: i64, amount: i64, limit: i64) -> DbResult<Option<i64>> {
    c.execute(Stmt::new(C::DIALECT.insert_payout_day_if_absent).bind(day))
        .await?;
    let reserved = c
        .execute(
            Stmt::new(
                "UPDATE payout_days SET reserved = reserved + $1 \
                 WHERE day = $2 AND reserved + $1 <= $3",
            )
            .bind(amount)
            .bind(day)
            .bind(limit),
        )
        .await?;
    if reserved == 1 {
        return Ok(None);
    }
    let row = c
        .fetch_one(Stmt::new("SELECT reserved FROM payout_days WHERE day = $1").bind(day))
        .await?;
    Ok(Some(row.int("reserved")?))
}

async fn release<C: Conn>(c: &mut C, day: i64, amount: i64) -> DbResult<()> {
    c.execute(
        Stmt::new("UPDATE payout_days SET reserved = reserved - $1 WHERE day = $2")
            .bind(amount)
            .bind(day),
    )
    .await?;
    Ok(())
}

pub(crate) async fn create_payout<C: Conn>(
    c: &mut C,
    new: &NewPayout,
    claim: Option<&IdempotencyClaim>,
    daily_limit: Option<i64>,
) -> DbResult<CreatePayoutResult> {
    if let Some(claim) = claim {
        match claim_key(c, claim, &new.id).await? {
            None => {}
            Some(ClaimedBefore::KeyReused) => return Ok(CreatePayoutResult::KeyReused),
            Some(ClaimedBefore::Replay(r)) => return Ok(CreatePayoutResult::Replay(r)),
            Some(ClaimedBefore::InProgress { id }) => {
                return Ok(CreatePayoutResult::InProgress { id });
            }
        }
    }
    if let Some(limit) = daily_limit
        && let Some(reserved) = reserve(c, new.eat_day, new.amount, limit).await?
    {
        release_claim(c, claim, &new.id).await?;
        return Ok(CreatePayoutResult::OverDailyLimit { reserved, limit });
    }
    check_len("payout id", &new.id, 64)?;
    c.execute(
        Stmt::new(
            "INSERT INTO payouts (id, status, phone, amount, command, remarks, occasion, \
             requested_by, source, api_key_id, eat_day, created_at, updated_at, version) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12, 1)",
        )
        .bind(&new.id)
        .bind(new.status.as_str())
        .bind(&new.phone)
        .bind(new.amount)
        .bind(&new.command)
        .bind(&new.remarks)
        .bind(&new.occasion)
        .bind(&new.requested_by)
        .bind(&new.source)
        .bind(&new.api_key_id)
        .bind(new.eat_day)
        .bind(new.created_at),
    )
    .await?;
    insert_event(
        c,
        &new.id,
        new.created_at,
        &NewMoneyOutEvent {
            kind: "requested".into(),
            detail: serde_json::json!({
                "requested_by": new.requested_by,
                "source": new.source,
                "amount": new.amount,
                "status": new.status.as_str(),
            })
            .to_string(),
        },
    )
    .await?;
    let created = payout_by_id(c, &new.id, Lock::None)
        .await?
        .ok_or(StorageError::NotFound)?;
    Ok(CreatePayoutResult::Created(Box::new(created)))
}

pub(crate) async fn update_payout<C: Conn>(
    c: &mut C,
    id: &str,
    now: Millis,
    decide: DecidePayoutUpdate<'_>,
) -> DbResult<Option<(Payout, PayoutUpdate)>> {
    let current = payout_by_id(c, id, Lock::ForUpdate)
        .await?
        .ok_or(StorageError::NotFound)?;
    let Some(update) = decide(&current) else {
        return Ok(None);
    };
    let mut n = current.clone();
    if let Some(s) = update.status {
        n.status = s;
        if s.is_final() && n.finalized_at.is_none() {
            n.finalized_at = Some(now);
        }
    }
    if let Some(v) = &update.decided_by {
        n.decided_by = Some(v.clone());
        n.decided_at = Some(now);
    }
    macro_rules! take {
        ($($f:ident),*) => { $( if let Some(v) = &update.$f { n.$f = Some(v.clone()); } )* };
    }
    take!(
        decision_note,
        request_id,
        receipt,
        recipient_name,
        result_code,
        result_desc
    );
    if let Some(v) = update.utility_balance_cents {
        n.utility_balance_cents = Some(v);
    }
    n.updated_at = now;
    n.version += 1;
    c.execute(
        Stmt::new(
            "UPDATE payouts SET status = $1, decided_by = $2, decided_at = $3, decision_note = $4, \
             request_id = $5, receipt = $6, recipient_name = $7, utility_balance_cents = $8, \
             result_code = $9, result_desc = $10, updated_at = $11, finalized_at = $12, \
             version = $13 WHERE id = $14",
        )
        .bind(n.status.as_str())
        .bind(&n.decided_by)
        .bind(n.decided_at)
        .bind(&n.decision_note)
        .bind(&n.request_id)
        .bind(&n.receipt)
        .bind(&n.recipient_name)
        .bind(n.utility_balance_cents)
        .bind(&n.result_code)
        .bind(&n.result_desc)
        .bind(n.updated_at)
        .bind(n.finalized_at)
        .bind(n.version)
        .bind(&n.id),
    )
    .await?;
    if update.release_reservation {
        release(c, n.eat_day, n.amount).await?;
    }
    if let Some(event) = &update.event {
        insert_event(c, &n.id, now, event).await?;
    }
    outbox::insert_events(c, &update.outbox).await?;
    Ok(Some((n, update)))
}

pub(crate) async fn list_payouts<C: Conn>(
    c: &mut C,
    filter: &PayoutFilter,
    page: &PageRequest,
) -> DbResult<Page<Payout>> {
    let keyset = Keyset::new(page)?;
    let mut q = SqlBuilder::new("SELECT ");
    q.push(PAYOUT_COLUMNS).push(" FROM payouts WHERE 1 = 1");
    if let Some(status) = filter.status {
        q.push(" AND status = ").push_bind(status.as_str());
    }
    if let Some(phone) = &filter.phone {
        q.push(" AND phone = ").push_bind(phone);
    }
    if let Some(before) = &keyset.before_id {
        q.push(" AND id < ").push_bind(before);
    }
    q.push(" ORDER BY id DESC LIMIT ")
        .push_bind(keyset.fetch_limit());
    let rows = c.fetch_all(q.build()).await?;
    let items = rows.iter().map(payout).collect::<crate::Result<Vec<_>>>()?;
    Ok(keyset.page(items, |p| &p.id))
}

/// The sum of payouts awaiting approval (for the overview's balance warning).
pub(crate) async fn awaiting_approval_total<C: Conn>(c: &mut C) -> DbResult<i64> {
    // Summed here: MySQL's SUM is a DECIMAL.
    let rows = c
        .fetch_all(Stmt::new(
            "SELECT amount FROM payouts WHERE status = 'awaiting_approval'",
        ))
        .await?;
    let mut total = 0i64;
    for r in &rows {
        total = total.saturating_add(r.int("amount")?);
    }
    Ok(total)
}

// ---- settling by hand ----------------------------------------------------------------------------

/// Whether an M-Pesa receipt is already recorded anywhere but on request `except`: a payment, a
/// payout, a refund's reversal, another initiator request.
async fn receipt_recorded<C: Conn>(c: &mut C, receipt: &str, except: &str) -> DbResult<bool> {
    let row = c
        .fetch_optional(
            Stmt::new(
                "SELECT 1 FROM payments WHERE mpesa_receipt_number = $1 \
                 UNION ALL SELECT 1 FROM initiator_requests WHERE receipt = $2 AND id <> $3 \
                 UNION ALL SELECT 1 FROM payouts WHERE receipt = $4 AND (request_id IS NULL OR request_id <> $5) \
                 UNION ALL SELECT 1 FROM refunds WHERE reversal_receipt = $6 AND (request_id IS NULL OR request_id <> $7)",
            )
            .bind(receipt)
            .bind(receipt)
            .bind(except)
            .bind(receipt)
            .bind(except)
            .bind(receipt)
            .bind(except),
        )
        .await?;
    Ok(row.is_some())
}

/// Makes settlements by hand wait for each other (they are rare: people type them), so that
/// the receipt check of one sees what another committed a moment ago. The row is written, not
/// only locked: Galera certifies writes, and the second to commit fails and runs again.
async fn settle_one_at_a_time<C: Conn>(c: &mut C) -> DbResult<()> {
    let taken = c
        .execute(Stmt::new(
            "UPDATE settle_by_hand_lock SET taken = taken + 1 WHERE id = 1",
        ))
        .await?;
    if taken == 0 {
        // Its row was deleted: a second one inserting it too fails on the key.
        c.execute(Stmt::new(
            "INSERT INTO settle_by_hand_lock (id, taken) VALUES (1, 1)",
        ))
        .await?;
    }
    Ok(())
}

/// A request settled by hand and its payout or refund, in the caller's one transaction. A
/// receipt recorded elsewhere, or an owner that refuses, undoes it all (`Conflict`).
pub(crate) async fn settle_request<C: Conn>(
    c: &mut C,
    id: &str,
    now: Millis,
    decide: DecideInitiator<'_>,
    owner: &SettleOwner<'_>,
) -> DbResult<Option<InitiatorRequest>> {
    // First: at READ COMMITTED every statement after the wait reads what the other committed.
    settle_one_at_a_time(c).await?;
    let Some((written, update)) = update_request(c, id, now, decide).await? else {
        return Ok(None);
    };
    if let Some(receipt) = update
        .transition
        .as_ref()
        .and_then(|t| t.receipt.as_deref())
        && receipt_recorded(c, receipt, &written.id).await?
    {
        return Err(StorageError::Conflict(format!(
            "receipt_in_use: the receipt {receipt} is already recorded"
        ))
        .into());
    }
    let owner_id = written
        .owner_id
        .clone()
        .ok_or_else(|| StorageError::InvalidInput("the request has no owner".into()))?;
    let taken = match owner {
        SettleOwner::Payout(decide) => update_payout(c, &owner_id, now, &|p| decide(&written, p))
            .await?
            .is_some(),
        SettleOwner::Refund(decide) => update_refund(c, &owner_id, now, &|r| decide(&written, r))
            .await?
            .is_some(),
    };
    if !taken {
        return Err(StorageError::Conflict(format!(
            "{owner_id} is no longer pending: nothing was recorded"
        ))
        .into());
    }
    // Its owner has just been told, in this transaction.
    mark_notified(c, &written.id, now).await?;
    Ok(Some(written))
}
