//! Raw callbacks: stored first and always, then applied to the payment they name.

use std::collections::HashMap;

use crate::cursor::Keyset;
use crate::db::{Conn, SqlBuilder, Stmt};
use crate::error::{DbResult, StorageError};
use crate::model::*;
use crate::records::{self, callback_columns};
use crate::store::payments::{self, Lock};
use crate::store::{MAX_KEY_LEN, links, outbox};
use crate::{DecideCallback, Millis};

/// The fast path of a batch: no savepoints, and few statements whatever the batch's size. The
/// payments the batch names are locked in one statement, every decision is made in memory
/// against the locked rows (a callback sees what an earlier one in the same batch did to its
/// payment), then the raw callbacks are inserted in one statement, each changed payment is
/// written once, and the timeline and outbox rows follow. `Ok(None)` when a statement failed:
/// the caller must then drop the transaction (rolling everything back) and run the batch again
/// with [`ingest_batch`], which isolates the failing item.
pub(crate) async fn ingest_batch_unisolated<C: Conn>(
    c: &mut C,
    batch: &[IncomingCallback],
    now: Millis,
    decide: DecideCallback<'_>,
) -> DbResult<Option<Vec<crate::Result<IngestedCallback>>>> {
    match ingest_batch_in_bulk(c, batch, now, decide).await {
        Ok(results) => Ok(Some(results.into_iter().map(Ok).collect())),
        Err(e) if e.transient => Err(e),
        Err(_) => Ok(None),
    }
}

async fn ingest_batch_in_bulk<C: Conn>(
    c: &mut C,
    batch: &[IncomingCallback],
    now: Millis,
    decide: DecideCallback<'_>,
) -> DbResult<Vec<IngestedCallback>> {
    let order = lock_order(batch);
    let mut checkout_ids: Vec<&str> = order.iter().filter_map(|&i| named(&batch[i])).collect();
    checkout_ids.dedup();
    // Each payment as locked (its version guards the write) and as the batch has left it.
    let mut payments: HashMap<String, (i64, Payment)> =
        payments::by_checkout_request_ids_locked(c, &checkout_ids)
            .await?
            .into_iter()
            .filter_map(|p| {
                let key = p.checkout_request_id.clone()?;
                Some((key, (p.version, p)))
            })
            .collect();

    // C2B confirmations: the payments that already hold their receipts (a copy, another path).
    let receipts: Vec<&str> = batch.iter().filter_map(receipt_named).collect();
    let held_before: HashMap<String, Payment> = payments::by_receipts(c, &receipts)
        .await?
        .into_iter()
        .filter_map(|p| Some((p.mpesa_receipt_number.clone()?, p)))
        .collect();
    let mut held = held_before.clone();
    let mut bookings: Vec<Booking> = Vec::new();
    // (row index, batch index, receipt) of C2B rows: their payment is known once booked.
    let mut c2b_rows: Vec<(usize, usize, String)> = Vec::new();

    let mut rows = Vec::with_capacity(batch.len());
    let mut results: Vec<Option<IngestedCallback>> = batch.iter().map(|_| None).collect();
    let mut changed: Vec<String> = Vec::new();
    let mut timeline: Vec<(String, NewPaymentEvent)> = Vec::new();
    let mut events: Vec<NewOutboxEvent> = Vec::new();
    for i in order {
        let item = &batch[i];
        if let Some(receipt) = receipt_named(item) {
            let holder = held.get(receipt);
            let decision = decide(item, holder);
            c2b_rows.push((rows.len(), i, receipt.to_owned()));
            rows.push((i, None, None, decision.outcome));
            match decision.book {
                Some(new) if holder.is_none() => {
                    held.insert(receipt.to_owned(), new.clone());
                    bookings.push(Booking {
                        index: i,
                        payment: new,
                        update: decision.update,
                        outbox: decision.outbox,
                    });
                }
                _ => events.extend(decision.outbox),
            }
            results[i] = Some(IngestedCallback {
                callback_id: item.id.clone(),
                outcome: decision.outcome,
                payment: None,
                update: None,
            });
            continue;
        }
        let checkout_request_id = named(item);
        let entry = checkout_request_id.and_then(|id| payments.get_mut(id));
        let decision = decide(item, entry.as_deref().map(|(_, p)| p));
        rows.push((
            i,
            checkout_request_id,
            entry.as_ref().map(|(_, p)| p.id.clone()),
            decision.outcome,
        ));
        let (payment, update) = match (entry, decision.update) {
            (Some((_, current)), Some(update)) => {
                let before = current.status;
                payments::update_in_place(current, &update, now);
                let held = links::settle(c, before, current, now).await?;
                // Keyed by the id the callback named (the payment was locked by it), not by
                // the payment's id after the change.
                if let Some(key) = checkout_request_id
                    && !changed.iter().any(|k| k == key)
                {
                    changed.push(key.to_owned());
                }
                if let Some(event) = update.timeline_entry() {
                    timeline.push((current.id.clone(), event));
                }
                events.extend(links::outbox_rows(&update, held.as_ref()));
                if let Some(held) = held {
                    timeline.push((current.id.clone(), held.event));
                }
                (Some(current.clone()), Some(update))
            }
            (entry, _) => (entry.map(|(_, p)| p.clone()), None),
        };
        events.extend(decision.outbox);
        results[i] = Some(IngestedCallback {
            callback_id: item.id.clone(),
            outcome: decision.outcome,
            payment,
            update,
        });
    }

    // Bookings go in before the callbacks and timeline rows that refer to them. A booking
    // whose receipt another copy, path or instance took first becomes a duplicate of it.
    let mut holders = book(c, &bookings).await?;
    for b in bookings {
        let receipt = b
            .payment
            .mpesa_receipt_number
            .as_deref()
            .unwrap_or_default();
        if holders.get(receipt).map(|h| &h.id) == Some(&b.payment.id) {
            if let Some(update) = &b.update {
                if let Some(event) = update.timeline_entry() {
                    timeline.push((b.payment.id.clone(), event));
                }
                let held = match holders.get_mut(receipt) {
                    Some(holder) => links::settle_booked(c, holder, now).await?,
                    None => None,
                };
                events.extend(links::outbox_rows(update, held.as_ref()));
                if let Some(held) = held {
                    timeline.push((b.payment.id.clone(), held.event));
                }
            }
            events.extend(b.outbox);
            if let Some(Some(r)) = results.get_mut(b.index) {
                r.update = b.update;
            }
        } else if let Some(Some(r)) = results.get_mut(b.index) {
            r.outcome = CallbackOutcome::Duplicate;
        }
    }
    for (row, i, receipt) in c2b_rows {
        let holder = holders.get(&receipt).or_else(|| held_before.get(&receipt));
        rows[row].2 = holder.map(|p| p.id.clone());
        if let Some(Some(r)) = results.get_mut(i) {
            rows[row].3 = r.outcome;
            r.payment = holder.cloned();
        }
    }

    let written: Vec<(i64, &Payment)> = changed
        .iter()
        .map(|key| {
            let (locked_version, next) = &payments[key];
            (*locked_version, next)
        })
        .collect();
    let found_by: Vec<&str> = changed.iter().map(String::as_str).collect();
    let timeline: Vec<(&str, &NewPaymentEvent)> =
        timeline.iter().map(|(id, e)| (id.as_str(), e)).collect();
    // The raw callbacks, the payments and their timeline in one request where the backend takes
    // several statements at once (SQLite: one round trip to its writer's thread, not three).
    // Each inserts or updates every one of its rows, or fails; so a sum short of the total is a
    // payment that moved while locked.
    let writes: Vec<Stmt> = [
        callbacks_insert(batch, &rows),
        payments::rows_update::<C>(&written, &found_by)?,
        payments::events_insert(now, &timeline),
    ]
    .into_iter()
    .flatten()
    .collect();
    let inserted = rows.len() as u64 + timeline.len() as u64;
    let changed = c.execute_all(writes).await?;
    payments::all_written(changed.saturating_sub(inserted), written.len())?;
    // Apart: a row whose dedupe key is taken is skipped, so its count says nothing.
    outbox::insert_events(c, &events).await?;
    Ok(results.into_iter().flatten().collect())
}

/// A payment a C2B confirmation brings into being, with what its booking writes.
struct Booking {
    index: usize,
    payment: Payment,
    update: Option<PaymentUpdate>,
    outbox: Vec<NewOutboxEvent>,
}

/// Inserts the bookings (in receipt order, so that instances inserting overlapping receipts
/// wait for each other rather than deadlock) and returns who holds each receipt.
async fn book<C: Conn>(c: &mut C, bookings: &[Booking]) -> DbResult<HashMap<String, Payment>> {
    let mut new: Vec<&Payment> = bookings.iter().map(|b| &b.payment).collect();
    new.sort_by(|a, b| a.mpesa_receipt_number.cmp(&b.mpesa_receipt_number));
    payments::insert_booked(c, &new).await
}

/// The receipt by which a C2B confirmation names its payment, when it can.
fn receipt_named(item: &IncomingCallback) -> Option<&str> {
    match item.kind {
        CallbackKind::C2bConfirmation => storable_checkout_request_id(item.receipt.as_deref())
            .filter(|r| !r.is_empty() && r.len() <= payments::MAX_ID_LEN),
        _ => None,
    }
}

/// The CheckoutRequestID by which an STK callback names its payment, when it can.
fn named(item: &IncomingCallback) -> Option<&str> {
    match item.kind {
        CallbackKind::Stk => storable_checkout_request_id(item.checkout_request_id.as_deref()),
        _ => None,
    }
}

/// The raw callbacks of a batch in one statement (rows: batch index, CheckoutRequestID,
/// payment id, outcome).
async fn insert_bulk<C: Conn>(
    c: &mut C,
    batch: &[IncomingCallback],
    rows: &[(usize, Option<&str>, Option<String>, CallbackOutcome)],
) -> DbResult<()> {
    if let Some(stmt) = callbacks_insert(batch, rows) {
        c.execute(stmt).await?;
    }
    Ok(())
}

/// [`insert_bulk`]'s statement (`None` for no rows); it inserts every row or fails.
fn callbacks_insert(
    batch: &[IncomingCallback],
    rows: &[(usize, Option<&str>, Option<String>, CallbackOutcome)],
) -> Option<Stmt> {
    if rows.is_empty() {
        return None;
    }
    let mut sql = SqlBuilder::new(
        "INSERT INTO callbacks (id, kind, received_at, remote_addr, headers, body, \
         checkout_request_id, payment_id, outcome, error_message, receipt) VALUES ",
    );
    for (n, (i, checkout_request_id, payment_id, outcome)) in rows.iter().enumerate() {
        let item = &batch[*i];
        sql.push(if n == 0 { "(" } else { ", (" })
            .push_bind(&item.id)
            .push(", ")
            .push_bind(item.kind.as_str())
            .push(", ")
            .push_bind(item.received_at)
            .push(", ")
            .push_bind(
                item.remote_addr
                    .as_deref()
                    .map(|a| storable_text(a).into_owned()),
            )
            .push(", ")
            .push_bind(storable_text(&item.headers).into_owned())
            .push(", ")
            .push_bind(item.body.as_slice())
            .push(", ")
            .push_bind(*checkout_request_id)
            .push(", ")
            .push_bind(payment_id.clone())
            .push(", ")
            .push_bind(outcome.as_str())
            .push(", ")
            .push_bind(
                item.parse_error
                    .as_deref()
                    .map(|e| storable_text(e).into_owned()),
            )
            .push(", ")
            .push_bind(receipt_named(item))
            .push(")");
    }
    Some(sql.build())
}

/// Stores one callback with its outcome, tied to no payment (initiator results and timeouts).
/// `named` is the id the callback names (an initiator result's ConversationID), kept in the
/// `checkout_request_id` column so that a result that came before its request's acknowledgement
/// can be matched later.
pub(crate) async fn insert_one<C: Conn>(
    c: &mut C,
    item: &IncomingCallback,
    named: Option<&str>,
    outcome: CallbackOutcome,
) -> DbResult<()> {
    insert_bulk(
        c,
        std::slice::from_ref(item),
        &[(0, storable_checkout_request_id(named), None, outcome)],
    )
    .await
}

/// Sets the outcome of a stored callback (an initiator result matched after it was stored).
pub(crate) async fn set_outcome<C: Conn>(
    c: &mut C,
    id: &str,
    outcome: CallbackOutcome,
) -> DbResult<()> {
    c.execute(
        Stmt::new("UPDATE callbacks SET outcome = $1 WHERE id = $2")
            .bind(outcome.as_str())
            .bind(id),
    )
    .await?;
    Ok(())
}

/// Initiator results and notices stored as `unmatched` that name `named`.
pub(crate) async fn unmatched_initiator<C: Conn>(
    c: &mut C,
    named: &[&str],
) -> DbResult<Vec<RawCallback>> {
    if named.is_empty() {
        return Ok(Vec::new());
    }
    let mut q = SqlBuilder::new(concat!(
        "SELECT ",
        callback_columns!(),
        " FROM callbacks WHERE outcome = 'unmatched' AND kind IN ('initiator_result', 'timeout') \
         AND checkout_request_id IN ("
    ));
    q.push_bind_list(named.iter().copied())
        .push(") ORDER BY id");
    let rows = c.fetch_all(q.build()).await?;
    Ok(rows
        .iter()
        .map(records::callback)
        .collect::<Result<_, _>>()?)
}

/// Stores callbacks raw, as `received` and tied to no payment (see `SqlStorage::store_received`).
pub(crate) async fn insert_received<C: Conn>(
    c: &mut C,
    batch: &[IncomingCallback],
) -> DbResult<()> {
    let rows: Vec<_> = batch
        .iter()
        .enumerate()
        .map(|(i, item)| {
            (
                i,
                storable_checkout_request_id(item.checkout_request_id.as_deref()),
                None,
                CallbackOutcome::Received,
            )
        })
        .collect();
    insert_bulk(c, batch, &rows).await
}

/// [`received`]'s query: the re-drive runs it every few seconds (`$2`: the id it goes on
/// after, `''` from the first, which every id sorts after).
pub(crate) const RECEIVED: &str = concat!(
    "SELECT ",
    callback_columns!(),
    " FROM callbacks WHERE outcome = 'received' AND received_at <= $1 AND id > $2 \
     ORDER BY id LIMIT $3"
);

/// Callbacks stored raw and not applied yet, received at or before `before`, oldest first,
/// from the one after `after_id` on.
pub(crate) async fn received<C: Conn>(
    c: &mut C,
    before: Millis,
    after_id: Option<&str>,
    limit: u32,
) -> DbResult<Vec<RawCallback>> {
    let rows = c
        .fetch_all(
            Stmt::new(RECEIVED)
                .bind(before)
                .bind(after_id.unwrap_or_default())
                .bind(limit.max(1)),
        )
        .await?;
    Ok(rows
        .iter()
        .map(records::callback)
        .collect::<Result<_, _>>()?)
}

/// CheckoutRequestID order, so that two instances ingesting overlapping batches lock payment
/// rows in the same order and cannot deadlock each other.
fn lock_order(batch: &[IncomingCallback]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..batch.len()).collect();
    order.sort_by(|&a, &b| {
        batch[a]
            .checkout_request_id
            .cmp(&batch[b].checkout_request_id)
    });
    order
}

/// Applies one batch in the caller's transaction. Items are processed in the order of their
/// CheckoutRequestID, so that two instances ingesting overlapping batches lock payment rows in
/// the same order and cannot deadlock each other; results come back in the batch's order.
/// Each item runs inside a savepoint: one that fails is rolled back alone.
pub(crate) async fn ingest_batch<C: Conn>(
    c: &mut C,
    batch: &[IncomingCallback],
    now: Millis,
    decide: DecideCallback<'_>,
) -> DbResult<Vec<crate::Result<IngestedCallback>>> {
    let order = lock_order(batch);
    let mut results: Vec<crate::Result<IngestedCallback>> = batch
        .iter()
        .map(|_| Err(StorageError::Database("not processed".into())))
        .collect();
    for i in order {
        let item = &batch[i];
        c.execute_raw("SAVEPOINT ingest_item").await?;
        match ingest_one(c, item, now, decide).await {
            Ok(done) => {
                c.execute_raw("RELEASE SAVEPOINT ingest_item").await?;
                results[i] = Ok(done);
            }
            // The server aborted the whole transaction: the caller runs it again.
            Err(e) if e.transient => return Err(e),
            Err(e) => {
                c.execute_raw("ROLLBACK TO SAVEPOINT ingest_item").await?;
                c.execute_raw("RELEASE SAVEPOINT ingest_item").await?;
                tracing::warn!(callback_id = %item.id, error = %e.error, "callback rolled back alone");
                results[i] = Err(e.error);
            }
        }
    }
    Ok(results)
}

async fn ingest_one<C: Conn>(
    c: &mut C,
    item: &IncomingCallback,
    now: Millis,
    decide: DecideCallback<'_>,
) -> DbResult<IngestedCallback> {
    let checkout_request_id = storable_checkout_request_id(item.checkout_request_id.as_deref());
    let (payment, decision) = named_and_decided(c, item, decide).await?;
    insert(
        c,
        item,
        checkout_request_id,
        payment.as_ref().map(|p| p.id.as_str()),
        decision.outcome,
    )
    .await?;
    apply(c, payment, decision, item.id.clone(), now).await
}

/// The payment a callback names (locked, for STK) and the decision about it. A C2B booking is
/// inserted here, before the callback row that refers to it: if its receipt was taken first,
/// the decision becomes a duplicate of the payment that holds it.
async fn named_and_decided<C: Conn>(
    c: &mut C,
    item: &IncomingCallback,
    decide: DecideCallback<'_>,
) -> DbResult<(Option<Payment>, CallbackDecision)> {
    if let Some(receipt) = receipt_named(item) {
        let holder = payments::by_receipts(c, &[receipt]).await?.pop();
        let mut decision = decide(item, holder.as_ref());
        let Some(new) = decision.book.take().filter(|_| holder.is_none()) else {
            decision.update = None;
            return Ok((holder, decision));
        };
        let mut holders = payments::insert_booked(c, &[&new]).await?;
        return Ok(match holders.remove(receipt) {
            Some(h) if h.id == new.id => {
                // Written already: `apply` adds its timeline entry and outbox rows only.
                decision.book = Some(new);
                (Some(h), decision)
            }
            other => (other, CallbackDecision::only(CallbackOutcome::Duplicate)),
        });
    }
    let payment = match (
        item.kind,
        storable_checkout_request_id(item.checkout_request_id.as_deref()),
    ) {
        (CallbackKind::Stk, Some(id)) => {
            payments::by_checkout_request_id(c, id, Lock::ForUpdate).await?
        }
        _ => None,
    };
    let decision = decide(item, payment.as_ref());
    Ok((payment, decision))
}

/// Writes what a decision says about the payment a callback names.
async fn apply<C: Conn>(
    c: &mut C,
    payment: Option<Payment>,
    decision: CallbackDecision,
    callback_id: String,
    now: Millis,
) -> DbResult<IngestedCallback> {
    let (payment, update) = match (payment, decision.update) {
        // A booking: the row is written; its timeline entry and outbox rows follow.
        (Some(mut booked), Some(update)) if decision.book.is_some() => {
            if let Some(event) = update.timeline_entry() {
                payments::insert_event(c, &booked.id, now, &event).await?;
            }
            let held = links::settle_booked(c, &mut booked, now).await?;
            if let Some(held) = &held {
                payments::insert_event(c, &booked.id, now, &held.event).await?;
            }
            outbox::insert_events(c, &links::outbox_rows(&update, held.as_ref())).await?;
            (Some(booked), Some(update))
        }
        (Some(current), Some(update)) => {
            let written = payments::apply_update(c, &current, &update, now).await?;
            (Some(written), Some(update))
        }
        // An update for no payment has nothing to apply to.
        (payment, _) => (payment, None),
    };
    outbox::insert_events(c, &decision.outbox).await?;
    Ok(IngestedCallback {
        callback_id,
        outcome: decision.outcome,
        payment,
        update,
    })
}

/// A CheckoutRequestID we can store in (and match on) its indexed column. Safaricom's are
/// short; anything longer, or with a NUL, matches nothing and is kept only in the raw body.
fn storable_checkout_request_id(id: Option<&str>) -> Option<&str> {
    id.filter(|id| id.len() <= MAX_KEY_LEN && !id.contains('\0'))
}

/// PostgreSQL text cannot hold NUL; what came from outside is stored with NULs replaced, so
/// that no callback is ever refused for its content (the body itself is kept as bytes).
fn storable_text(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\0') {
        text.replace('\0', "\u{FFFD}").into()
    } else {
        text.into()
    }
}

async fn insert<C: Conn>(
    c: &mut C,
    item: &IncomingCallback,
    checkout_request_id: Option<&str>,
    payment_id: Option<&str>,
    outcome: CallbackOutcome,
) -> DbResult<()> {
    let row = (
        0,
        checkout_request_id,
        payment_id.map(str::to_owned),
        outcome,
    );
    insert_bulk(c, std::slice::from_ref(item), &[row]).await
}

const SELECT_BY_ID: &str = concat!(
    "SELECT ",
    callback_columns!(),
    " FROM callbacks WHERE id = $1"
);

/// Outcomes of callbacks that changed nothing yet, which a reapply may still act on.
fn not_acted_on(outcome: CallbackOutcome) -> bool {
    matches!(
        outcome,
        CallbackOutcome::Unmatched
            | CallbackOutcome::Unparseable
            | CallbackOutcome::Stored
            | CallbackOutcome::Received
    )
}

/// Decides a stored callback again. The callback row is locked first, so that two instances
/// reapplying the same callback do it once: the second finds it acted on and reports what is
/// recorded.
pub(crate) async fn reapply<C: Conn>(
    c: &mut C,
    callback_id: &str,
    now: Millis,
    decide: DecideCallback<'_>,
) -> DbResult<IngestedCallback> {
    let row = c
        .fetch_optional(Stmt::with_suffix(SELECT_BY_ID, C::DIALECT.for_update).bind(callback_id))
        .await?
        .ok_or(StorageError::NotFound)?;
    let stored = records::callback(&row)?;
    if !not_acted_on(stored.outcome) {
        let payment = match &stored.payment_id {
            Some(id) => payments::by_id(c, id, Lock::None).await?,
            None => None,
        };
        return Ok(IngestedCallback {
            callback_id: stored.id,
            outcome: stored.outcome,
            payment,
            update: None,
        });
    }
    let incoming = IncomingCallback {
        id: stored.id,
        kind: stored.kind,
        received_at: stored.received_at,
        remote_addr: stored.remote_addr,
        headers: stored.headers,
        body: stored.body,
        checkout_request_id: stored.checkout_request_id,
        receipt: stored.receipt,
        parse_error: stored.error,
    };
    let (payment, decision) = named_and_decided(c, &incoming, decide).await?;
    c.execute(
        Stmt::new("UPDATE callbacks SET outcome = $1, payment_id = $2 WHERE id = $3")
            .bind(decision.outcome.as_str())
            .bind(payment.as_ref().map(|p| p.id.as_str()))
            .bind(&incoming.id),
    )
    .await?;
    apply(c, payment, decision, incoming.id, now).await
}

pub(crate) async fn rematchable<C: Conn>(c: &mut C, limit: u32) -> DbResult<Vec<RawCallback>> {
    const SQL: &str = concat!(
        "SELECT ",
        callback_columns!(),
        " FROM callbacks WHERE outcome = 'unmatched' AND kind = 'stk' \
         AND checkout_request_id IS NOT NULL \
         AND EXISTS (SELECT 1 FROM payments p WHERE p.checkout_request_id = callbacks.checkout_request_id) \
         ORDER BY id LIMIT $1"
    );
    let rows = c.fetch_all(Stmt::new(SQL).bind(limit.max(1))).await?;
    Ok(rows
        .iter()
        .map(records::callback)
        .collect::<Result<_, _>>()?)
}

pub(crate) async fn by_id<C: Conn>(c: &mut C, id: &str) -> DbResult<Option<RawCallback>> {
    let row = c.fetch_optional(Stmt::new(SELECT_BY_ID).bind(id)).await?;
    Ok(row.as_ref().map(records::callback).transpose()?)
}

pub(crate) async fn list<C: Conn>(
    c: &mut C,
    filter: &CallbackFilter,
    page: &PageRequest,
) -> DbResult<Page<RawCallback>> {
    let keyset = Keyset::new(page)?;
    let mut q = SqlBuilder::new(concat!(
        "SELECT ",
        callback_columns!(),
        " FROM callbacks WHERE 1 = 1"
    ));
    if let Some(outcome) = filter.outcome {
        q.push(" AND outcome = ").push_bind(outcome.as_str());
    }
    if let Some(kind) = filter.kind {
        q.push(" AND kind = ").push_bind(kind.as_str());
    }
    if let Some(payment_id) = &filter.payment_id {
        q.push(" AND payment_id = ").push_bind(payment_id);
    }
    if let Some(before) = &keyset.before_id {
        q.push(" AND id < ").push_bind(before);
    }
    q.push(" ORDER BY id DESC LIMIT ")
        .push_bind(keyset.fetch_limit());
    let rows = c.fetch_all(q.build()).await?;
    let items = rows
        .iter()
        .map(records::callback)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(keyset.page(items, |cb| &cb.id))
}

pub(crate) async fn for_payment<C: Conn>(
    c: &mut C,
    payment_id: &str,
) -> DbResult<Vec<RawCallback>> {
    const SQL: &str = concat!(
        "SELECT ",
        callback_columns!(),
        " FROM callbacks WHERE payment_id = $1 ORDER BY received_at, id"
    );
    let rows = c.fetch_all(Stmt::new(SQL).bind(payment_id)).await?;
    Ok(rows
        .iter()
        .map(records::callback)
        .collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_checkout_ids_match_nothing() {
        assert_eq!(
            storable_checkout_request_id(Some("ws_CO_1")),
            Some("ws_CO_1")
        );
        assert_eq!(storable_checkout_request_id(Some(&"x".repeat(256))), None);
        assert_eq!(storable_checkout_request_id(Some("a\0b")), None);
        assert_eq!(storable_text("a\0b"), "a\u{FFFD}b");
    }
}
