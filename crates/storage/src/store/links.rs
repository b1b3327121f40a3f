//! Payment links, the settling of a single-use link by the payment that pays it, and the pay
//! page's rate-limit counters.

use mpesa_domain::PaymentStatus;

use crate::Millis;
use crate::cursor::Keyset;
use crate::db::{Conn, RowExt, SqlBuilder, Stmt};
use crate::error::{DbResult, StorageError};
use crate::model::*;
use crate::records::{self, payment_link_columns};
use crate::store::check_len;

const SELECT_BY_ID: &str = concat!(
    "SELECT ",
    payment_link_columns!(),
    " FROM payment_links WHERE id = $1"
);
const SELECT_BY_SLUG: &str = concat!(
    "SELECT ",
    payment_link_columns!(),
    " FROM payment_links WHERE slug = $1"
);
const SELECT_OPEN_BY_ACCOUNT: &str = concat!(
    "SELECT ",
    payment_link_columns!(),
    " FROM payment_links WHERE open_account = $1 AND status = 'active' \
     AND (expires_at IS NULL OR expires_at > $2)"
);

const SELECT_PAID_BY_ACCOUNT: &str = concat!(
    "SELECT ",
    payment_link_columns!(),
    " FROM payment_links WHERE account_number = $1 AND status = 'paid' \
     ORDER BY updated_at DESC, id DESC LIMIT 1"
);

/// Active links past their expiry become `expired` and give their account number back.
async fn close_expired<C: Conn>(c: &mut C, now: Millis) -> DbResult<()> {
    c.execute(
        Stmt::new(
            "UPDATE payment_links SET status = 'expired', open_account = NULL, updated_at = $1 \
             WHERE status = 'active' AND expires_at IS NOT NULL AND expires_at <= $1",
        )
        .bind(now),
    )
    .await?;
    Ok(())
}

/// Stores a new link under the first of its candidate account numbers that no open link
/// holds. `Err(Conflict)` when all are taken.
pub(crate) async fn create<C: Conn>(c: &mut C, new: &NewPaymentLink) -> DbResult<PaymentLink> {
    check_len("link id", &new.id, 64)?;
    check_len("slug", &new.slug, 64)?;
    if let Some(r) = &new.reference {
        check_len("reference", r, 64)?;
    }
    close_expired(c, new.created_at).await?;
    let mut account = None;
    for candidate in &new.account_candidates {
        check_len("account number", candidate, 16)?;
        let taken = c
            .fetch_optional(
                Stmt::new("SELECT id FROM payment_links WHERE open_account = $1").bind(candidate),
            )
            .await?
            .is_some();
        if !taken {
            account = Some(candidate.clone());
            break;
        }
    }
    let Some(account) = account else {
        return Err(
            StorageError::Conflict("every candidate account number is taken".into()).into(),
        );
    };
    c.execute(
        Stmt::new(
            "INSERT INTO payment_links (id, slug, account_number, open_account, title, amount, \
             amount_min, amount_max, reference, description, single_use, expires_at, status, \
             language, paid_payment_id, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'active', $13, NULL, $14, $15)",
        )
        .bind(&new.id)
        .bind(&new.slug)
        .bind(&account)
        .bind(&account)
        .bind(&new.title)
        .bind(new.amount)
        .bind(new.amount_min)
        .bind(new.amount_max)
        .bind(&new.reference)
        .bind(&new.description)
        .bind(new.single_use)
        .bind(new.expires_at)
        .bind(new.language.map(|l| l.as_str()))
        .bind(new.created_at)
        .bind(new.created_at),
    )
    .await?;
    by_id(c, &new.id)
        .await?
        .ok_or_else(|| StorageError::Database("the new link is not there".into()).into())
}

pub(crate) async fn by_id<C: Conn>(c: &mut C, id: &str) -> DbResult<Option<PaymentLink>> {
    let row = c.fetch_optional(Stmt::new(SELECT_BY_ID).bind(id)).await?;
    Ok(row.as_ref().map(records::payment_link).transpose()?)
}

pub(crate) async fn by_slug<C: Conn>(c: &mut C, slug: &str) -> DbResult<Option<PaymentLink>> {
    let row = c
        .fetch_optional(Stmt::new(SELECT_BY_SLUG).bind(slug))
        .await?;
    Ok(row.as_ref().map(records::payment_link).transpose()?)
}

/// The open link (active, not expired at `now`) whose account number is `account`.
pub(crate) async fn open_by_account<C: Conn>(
    c: &mut C,
    account: &str,
    now: Millis,
) -> DbResult<Option<PaymentLink>> {
    let row = c
        .fetch_optional(Stmt::new(SELECT_OPEN_BY_ACCOUNT).bind(account).bind(now))
        .await?;
    Ok(row.as_ref().map(records::payment_link).transpose()?)
}

/// The single-use link with this account number paid most recently.
pub(crate) async fn paid_by_account<C: Conn>(
    c: &mut C,
    account: &str,
) -> DbResult<Option<PaymentLink>> {
    let row = c
        .fetch_optional(Stmt::new(SELECT_PAID_BY_ACCOUNT).bind(account))
        .await?;
    Ok(row.as_ref().map(records::payment_link).transpose()?)
}

/// Newest first, keyset-paginated by id.
pub(crate) async fn list<C: Conn>(c: &mut C, page: &PageRequest) -> DbResult<Page<PaymentLink>> {
    let keyset = Keyset::new(page)?;
    let mut q = SqlBuilder::new(concat!(
        "SELECT ",
        payment_link_columns!(),
        " FROM payment_links WHERE 1 = 1"
    ));
    if let Some(before) = &keyset.before_id {
        q.push(" AND id < ").push_bind(before);
    }
    q.push(" ORDER BY id DESC LIMIT ")
        .push_bind(keyset.fetch_limit());
    let rows = c.fetch_all(q.build()).await?;
    let items = rows
        .iter()
        .map(records::payment_link)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(keyset.page(items, |l| &l.id))
}

/// Disables an active link (an expired one too); a paid or disabled link stays as it is.
/// `None` when there is no such link.
pub(crate) async fn disable<C: Conn>(
    c: &mut C,
    id: &str,
    now: Millis,
) -> DbResult<Option<PaymentLink>> {
    c.execute(
        Stmt::new(
            "UPDATE payment_links SET status = 'disabled', open_account = NULL, updated_at = $1 \
             WHERE id = $2 AND status IN ('active', 'expired')",
        )
        .bind(now)
        .bind(id),
    )
    .await?;
    by_id(c, id).await
}

/// The payments a link brought (the partial index on payment_link_id holds only those).
pub(crate) const PAYMENTS_OF_LINK: &str =
    "SELECT status, amount FROM payments WHERE payment_link_id = $1";

pub(crate) async fn totals<C: Conn>(c: &mut C, id: &str) -> DbResult<LinkTotals> {
    let rows = c.fetch_all(Stmt::new(PAYMENTS_OF_LINK).bind(id)).await?;
    let mut totals = LinkTotals::default();
    for row in &rows {
        totals.payment_count += 1;
        if row.text("status")? == PaymentStatus::Completed.as_str() {
            totals.completed_count += 1;
            totals.completed_amount += row.int("amount")?;
        }
    }
    Ok(totals)
}

/// A payment held because the single-use link it paid had been paid by another.
pub(crate) struct Held {
    /// Its timeline entry.
    pub event: NewPaymentEvent,
    /// The payment that paid the link.
    pub paid_by: String,
}

/// The outbox rows a payment update writes: its own, or, when [`settle`] held the payment,
/// `if_link_already_paid` instead (nobody is told it completed), with the payment that paid
/// the link put in place of [`mpesa_domain::link::PAID_BY_MARK`].
pub(crate) fn outbox_rows(update: &PaymentUpdate, held: Option<&Held>) -> Vec<NewOutboxEvent> {
    match held {
        None => update.outbox.clone(),
        Some(held) => update
            .if_link_already_paid
            .iter()
            .map(|e| NewOutboxEvent {
                payload: e
                    .payload
                    .replace(mpesa_domain::link::PAID_BY_MARK, &held.paid_by),
                ..e.clone()
            })
            .collect(),
    }
}

/// Called by every write of a payment, before its row is written, in the same transaction:
/// when `next` completes a payment made through a single-use link, the link (locked) becomes
/// `paid` by it; if another payment had paid it already, `next` is held for review (the
/// customer paid twice) and the hold is returned.
pub(crate) async fn settle<C: Conn>(
    c: &mut C,
    before: PaymentStatus,
    next: &mut Payment,
    now: Millis,
) -> DbResult<Option<Held>> {
    let Some(link_id) = next.payment_link_id.clone() else {
        return Ok(None);
    };
    if next.status != PaymentStatus::Completed || before == PaymentStatus::Completed {
        return Ok(None);
    }
    let row = c
        .fetch_optional(
            Stmt::with_suffix(
                "SELECT single_use, paid_payment_id FROM payment_links WHERE id = $1",
                C::DIALECT.for_update,
            )
            .bind(&link_id),
        )
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    if !row.flag("single_use")? {
        return Ok(None);
    }
    match row.opt_text("paid_payment_id")? {
        None => {
            c.execute(
                Stmt::new(
                    "UPDATE payment_links SET status = 'paid', open_account = NULL, \
                     paid_payment_id = $1, updated_at = $2 WHERE id = $3",
                )
                .bind(&next.id)
                .bind(now)
                .bind(&link_id),
            )
            .await?;
            Ok(None)
        }
        Some(paid_by) if paid_by == next.id => Ok(None),
        Some(paid_by) => {
            let hold = mpesa_domain::link::on_already_paid(next.status, &link_id, &paid_by);
            hold.apply(next.fields_mut(), now);
            let detail = serde_json::json!({
                "reason": next.review_reason,
                "payment_link_id": link_id,
                "paid_by": paid_by,
                "suggestion": "refund",
            });
            Ok(Some(Held {
                event: NewPaymentEvent::named(hold.kind, detail.to_string()),
                paid_by,
            }))
        }
    }
}

/// [`settle`] for a payment just inserted as completed (a C2B booking): when it is held, its
/// row (written in this transaction) is updated to say so.
pub(crate) async fn settle_booked<C: Conn>(
    c: &mut C,
    booked: &mut Payment,
    now: Millis,
) -> DbResult<Option<Held>> {
    let held = settle(c, PaymentStatus::Initiated, booked, now).await?;
    if held.is_some() {
        c.execute(
            Stmt::new("UPDATE payments SET needs_review = $1, review_reason = $2 WHERE id = $3")
                .bind(booked.needs_review)
                .bind(&booked.review_reason)
                .bind(&booked.id),
        )
        .await?;
    }
    Ok(held)
}

/// Counts one hit in each of `limits` unless one of them is full: then nothing is counted and
/// the answer is when the fullest frees up (Unix ms). Buckets are locked in name order, so
/// instances counting the same buckets cannot deadlock.
pub(crate) async fn hit_rate_limits<C: Conn>(
    c: &mut C,
    limits: &[RateLimit],
    now: Millis,
) -> DbResult<Option<Millis>> {
    let mut limits: Vec<&RateLimit> = limits.iter().collect();
    limits.sort_by(|a, b| a.bucket.cmp(&b.bucket));
    limits.dedup_by(|a, b| a.bucket == b.bucket);
    let mut counts = Vec::with_capacity(limits.len());
    let mut retry_at: Option<Millis> = None;
    for limit in &limits {
        check_len("rate-limit bucket", &limit.bucket, 190)?;
        let window = limit.window_ms.max(1);
        // A bucket's window starts at its first hit, not at a clock boundary: a burst cannot
        // double by straddling one, and what a window allows does not depend on the minute.
        c.execute(
            Stmt::new(C::DIALECT.insert_rate_limit_if_absent)
                .bind(&limit.bucket)
                .bind(now),
        )
        .await?;
        let row = c
            .fetch_one(
                Stmt::with_suffix(
                    "SELECT window_start, hits FROM rate_limits WHERE bucket = $1",
                    C::DIALECT.for_update,
                )
                .bind(&limit.bucket),
            )
            .await?;
        let stored_start = row.int("window_start")?;
        let (window_start, hits) = if now < stored_start.saturating_add(window) {
            (stored_start, row.int("hits")?)
        } else {
            (now, 0)
        };
        if hits >= limit.limit {
            let free_at = window_start + window;
            retry_at = Some(retry_at.map_or(free_at, |r| r.max(free_at)));
        }
        counts.push((limit.bucket.clone(), window_start, hits));
    }
    if retry_at.is_some() {
        return Ok(retry_at);
    }
    for (bucket, window_start, hits) in counts {
        c.execute(
            Stmt::new("UPDATE rate_limits SET window_start = $1, hits = $2 WHERE bucket = $3")
                .bind(window_start)
                .bind(hits + 1)
                .bind(&bucket),
        )
        .await?;
    }
    Ok(None)
}

/// Forgets counters whose window started before `before`; how many went.
pub(crate) async fn delete_rate_limits_before<C: Conn>(c: &mut C, before: Millis) -> DbResult<u64> {
    c.execute(Stmt::new("DELETE FROM rate_limits WHERE window_start < $1").bind(before))
        .await
}
