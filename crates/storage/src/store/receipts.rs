//! Receipt checks (Transaction Status of an M-Pesa receipt code): one row per check, at most one
//! in flight per code (the unique `active_code`), its answer, the payment it belongs to, and the
//! Telegram chats told of it — the answer, its timeline entry and its outbox rows in one
//! transaction.

use crate::Millis;
use crate::db::{Conn, RowExt, Stmt};
use crate::error::{DbResult, StorageError};
use crate::money_out::*;
use crate::store::money_out::insert_event;
use crate::store::payments::Lock;
use crate::store::{check_len, outbox};

const COLUMNS: &str = "id, code, status, request_id, finding, outcome, result_code, result_desc, \
    details, payment_id, requested_by, source, telegram_chats, created_at, updated_at, \
    finalized_at, version";

fn chats_text(chats: &[i64]) -> String {
    chats
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn check<R: RowExt>(r: &R) -> crate::Result<ReceiptCheck> {
    let status = r.text("status")?;
    let chats = r.text("telegram_chats")?;
    Ok(ReceiptCheck {
        id: r.text("id")?,
        code: r.text("code")?,
        status: ReceiptCheckStatus::parse(&status)
            .ok_or_else(|| StorageError::Corrupt(format!("receipt check status {status}")))?,
        request_id: r.opt_text("request_id")?,
        finding: r.opt_text("finding")?,
        outcome: r.opt_text("outcome")?,
        result_code: r.opt_text("result_code")?,
        result_desc: r.opt_text("result_desc")?,
        details: r.opt_text("details")?,
        payment_id: r.opt_text("payment_id")?,
        requested_by: r.text("requested_by")?,
        source: r.text("source")?,
        telegram_chats: chats
            .split(',')
            .filter_map(|c| c.trim().parse().ok())
            .collect(),
        created_at: r.int("created_at")?,
        updated_at: r.int("updated_at")?,
        finalized_at: r.opt_int("finalized_at")?,
        version: r.int("version")?,
    })
}

fn select(where_clause: &str, lock: Lock, dialect_lock: &str) -> Stmt {
    let mut sql = format!("SELECT {COLUMNS} FROM receipt_checks WHERE {where_clause}");
    if matches!(lock, Lock::ForUpdate) {
        sql.push_str(dialect_lock);
    }
    Stmt {
        sql: sql.into(),
        args: Vec::new(),
    }
}

/// Inserts the check as `pending`, in flight for its code: `Conflict` when another check of the
/// code is in flight.
pub(crate) async fn insert<C: Conn>(c: &mut C, new: &NewReceiptCheck) -> DbResult<ReceiptCheck> {
    check_len("receipt check id", &new.id, 64)?;
    check_len("receipt", &new.code, 64)?;
    let chats: Vec<i64> = new.telegram_chat.into_iter().collect();
    c.execute(
        Stmt::new(
            "INSERT INTO receipt_checks (id, code, active_code, status, requested_by, source, \
             telegram_chats, created_at, updated_at, version) \
             VALUES ($1, $2, $2, 'pending', $3, $4, $5, $6, $6, 1)",
        )
        .bind(&new.id)
        .bind(&new.code)
        .bind(&new.requested_by)
        .bind(&new.source)
        .bind(chats_text(&chats))
        .bind(new.created_at),
    )
    .await?;
    insert_event(
        c,
        &new.id,
        new.created_at,
        &NewMoneyOutEvent {
            kind: "receipt_check_requested".into(),
            detail: serde_json::json!({
                "code": new.code,
                "requested_by": new.requested_by,
                "source": new.source,
            })
            .to_string(),
        },
    )
    .await?;
    by_id(c, &new.id, Lock::None)
        .await?
        .ok_or_else(|| StorageError::NotFound.into())
}

pub(crate) async fn by_id<C: Conn>(
    c: &mut C,
    id: &str,
    lock: Lock,
) -> DbResult<Option<ReceiptCheck>> {
    let stmt = select("id = $1", lock, C::DIALECT.for_update).bind(id);
    Ok(c.fetch_optional(stmt)
        .await?
        .map(|r| check(&r))
        .transpose()?)
}

/// The check of `code` in flight, if any.
pub(crate) async fn active<C: Conn>(c: &mut C, code: &str) -> DbResult<Option<ReceiptCheck>> {
    let stmt = select("active_code = $1", Lock::None, "").bind(code);
    Ok(c.fetch_optional(stmt)
        .await?
        .map(|r| check(&r))
        .transpose()?)
}

/// The checks of `code`, newest first.
pub(crate) async fn for_code<C: Conn>(
    c: &mut C,
    code: &str,
    limit: u32,
) -> DbResult<Vec<ReceiptCheck>> {
    let stmt = Stmt {
        sql: format!(
            "SELECT {COLUMNS} FROM receipt_checks WHERE code = $1 \
             ORDER BY created_at DESC, id DESC LIMIT {}",
            limit.clamp(1, 500)
        )
        .into(),
        args: Vec::new(),
    }
    .bind(code);
    Ok(c.fetch_all(stmt)
        .await?
        .iter()
        .map(check)
        .collect::<crate::Result<_>>()?)
}

pub(crate) async fn update<C: Conn>(
    c: &mut C,
    id: &str,
    now: Millis,
    decide: DecideReceiptCheck<'_>,
) -> DbResult<Option<(ReceiptCheck, ReceiptCheckUpdate)>> {
    let current = by_id(c, id, Lock::ForUpdate)
        .await?
        .ok_or(StorageError::NotFound)?;
    let Some(update) = decide(&current) else {
        return Ok(None);
    };
    let mut n = current.clone();
    if let Some(s) = update.status {
        // Answered after it was given up (failed → answered): final when the answer came.
        if s.is_final() && (n.finalized_at.is_none() || s != n.status) {
            n.finalized_at = Some(now);
        }
        n.status = s;
    }
    let set = |field: &mut Option<String>, v: &Option<String>| {
        if let Some(v) = v {
            *field = Some(v.clone());
        }
    };
    set(&mut n.request_id, &update.request_id);
    set(&mut n.finding, &update.finding);
    set(&mut n.outcome, &update.outcome);
    set(&mut n.result_code, &update.result_code);
    set(&mut n.result_desc, &update.result_desc);
    set(&mut n.details, &update.details);
    set(&mut n.payment_id, &update.payment_id);
    if let Some(chat) = update.add_telegram_chat
        && !n.telegram_chats.contains(&chat)
    {
        n.telegram_chats.push(chat);
    }
    n.updated_at = now;
    n.version += 1;
    let active = (!n.status.is_final()).then(|| n.code.clone());
    c.execute(
        Stmt::new(
            "UPDATE receipt_checks SET status = $1, active_code = $2, request_id = $3, \
             finding = $4, outcome = $5, result_code = $6, result_desc = $7, details = $8, \
             payment_id = $9, telegram_chats = $10, updated_at = $11, finalized_at = $12, \
             version = $13 WHERE id = $14",
        )
        .bind(n.status.as_str())
        .bind(active)
        .bind(&n.request_id)
        .bind(&n.finding)
        .bind(&n.outcome)
        .bind(&n.result_code)
        .bind(&n.result_desc)
        .bind(&n.details)
        .bind(&n.payment_id)
        .bind(chats_text(&n.telegram_chats))
        .bind(n.updated_at)
        .bind(n.finalized_at)
        .bind(n.version)
        .bind(&n.id),
    )
    .await?;
    if let Some(event) = &update.event {
        insert_event(c, &n.id, now, event).await?;
    }
    outbox::insert_events(c, &update.outbox).await?;
    Ok(Some((n, update)))
}
