//! The outbox: rows written in the same transaction as the change they announce, claimed by
//! workers under a lease, and their delivery attempts.

use crate::Millis;
use crate::cursor::Keyset;
use std::collections::HashMap;

use crate::db::{Arg, Conn, RowExt, SeveralStatements, SqlBuilder, Stmt};
use crate::error::{DbResult, StorageError};
use crate::model::*;
use crate::records::{self, outbox_columns};
use crate::store::{MAX_KEY_LEN, check_len};

/// Inserts events, skipping those whose `dedupe_key` exists. Each is due at its `created_at`.
pub(crate) async fn insert_events<C: Conn>(c: &mut C, events: &[NewOutboxEvent]) -> DbResult<()> {
    // A few rows per statement: a batch of callbacks with a webhook and alerts makes dozens,
    // and a statement each was a round trip each.
    for chunk in events.chunks(C::DIALECT.outbox_rows_per_statement.max(1)) {
        let mut sql = SqlBuilder::new(
            "INSERT INTO outbox_events (id, payment_id, channel, event_type, destination, \
             payload, dedupe_key, status, attempts, next_attempt_at, created_at) VALUES ",
        );
        for (i, event) in chunk.iter().enumerate() {
            check_len("outbox dedupe key", &event.dedupe_key, MAX_KEY_LEN)?;
            sql.push(if i == 0 { "(" } else { ", (" })
                .push_bind(&event.id)
                .push(", ")
                .push_bind(&event.payment_id)
                .push(", ")
                .push_bind(event.channel.as_str())
                .push(", ")
                .push_bind(&event.event_type)
                .push(", ")
                .push_bind(&event.destination)
                .push(", ")
                .push_bind(&event.payload)
                .push(", ")
                .push_bind(&event.dedupe_key)
                .push(", 'pending', 0, ")
                .push_bind(event.created_at)
                .push(", ")
                .push_bind(event.created_at)
                .push(")");
        }
        sql.push(C::DIALECT.skip_taken_dedupe_key);
        c.execute(sql.build()).await?;
    }
    Ok(())
}

/// Claims pending events on `channels` due at `now` whose lease is free or expired, for `owner`.
pub(crate) async fn claim<C: Conn>(
    c: &mut C,
    now: Millis,
    owner: &str,
    lease_until: Millis,
    limit: u32,
    channels: &[Channel],
) -> DbResult<Vec<OutboxEvent>> {
    if channels.is_empty() {
        return Ok(Vec::new());
    }
    let mut due = SqlBuilder::new(concat!(
        "SELECT ",
        outbox_columns!(),
        " FROM outbox_events WHERE status = 'pending' AND next_attempt_at <= "
    ));
    due.push_bind(now)
        .push(" AND (lease_until IS NULL OR lease_until <= ")
        .push_bind(now)
        .push(") AND channel IN (");
    due.push_bind_list(channels.iter().map(|ch| ch.as_str()))
        .push(") ORDER BY next_attempt_at LIMIT ")
        .push_bind(limit.max(1))
        .push(C::DIALECT.for_update_skip_locked);
    let rows = c.fetch_all(due.build()).await?;
    let mut events = rows
        .iter()
        .map(records::outbox_event)
        .collect::<Result<Vec<_>, _>>()?;
    if events.is_empty() {
        return Ok(events);
    }
    let mut q = SqlBuilder::new("UPDATE outbox_events SET lease_owner = ");
    q.push_bind(owner)
        .push(", lease_until = ")
        .push_bind(lease_until)
        .push(" WHERE id IN (");
    q.push_bind_list(events.iter().map(|e| e.id.as_str()))
        .push(")");
    c.execute(q.build()).await?;
    for e in &mut events {
        e.lease_owner = Some(owner.to_owned());
        e.lease_until = Some(lease_until);
    }
    Ok(events)
}

/// Records an attempt and its consequence while `owner` holds the event's lease. The lease is
/// `owner`'s until another worker claims the event: a slow worker whose lease expired but
/// was not taken over still records its result (better than delivering twice).
pub(crate) async fn record_delivery<C: Conn>(
    c: &mut C,
    event_id: &str,
    owner: &str,
    attempt: &DeliveryAttempt,
) -> DbResult<bool> {
    let row = c
        .fetch_optional(
            Stmt::with_suffix(
                "SELECT status, lease_owner, next_attempt_at FROM outbox_events WHERE id = $1",
                C::DIALECT.for_update,
            )
            .bind(event_id),
        )
        .await?
        .ok_or(StorageError::NotFound)?;
    let status = records::outbox_status(&row.text("status")?)?;
    if status != OutboxStatus::Pending || row.opt_text("lease_owner")?.as_deref() != Some(owner) {
        return Ok(false);
    }
    // Attempts are numbered over the event's whole life (a manual retry resets the counter
    // that drives backoff, not the numbering).
    let previous = c
        .fetch_one(
            Stmt::new("SELECT COUNT(*) AS n FROM outbox_attempts WHERE event_id = $1")
                .bind(event_id),
        )
        .await?
        .int("n")?;
    let (status, result, next_attempt_at, delivered_at) =
        consequence(attempt, row.int("next_attempt_at")?);
    c.execute(
        Stmt::new(
            "INSERT INTO outbox_attempts (event_id, attempt, started_at, duration_ms, result, \
             response_code, error_message) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(event_id)
        .bind(previous + 1)
        .bind(attempt.started_at)
        .bind(attempt.duration_ms)
        .bind(result)
        .bind(attempt.response_code)
        .bind(&attempt.error),
    )
    .await?;
    c.execute(
        Stmt::new(
            "UPDATE outbox_events SET status = $1, attempts = attempts + 1, next_attempt_at = $2, \
             delivered_at = $3, last_error = $4, lease_owner = NULL, lease_until = NULL WHERE id = $5",
        )
        .bind(status.as_str())
        .bind(next_attempt_at)
        .bind(delivered_at)
        .bind(&attempt.error)
        .bind(event_id),
    )
    .await?;
    Ok(true)
}

/// What an attempt makes of its event: status, the attempt's result, when it is next due
/// (`due`, the row's, unless retried), when it was delivered.
fn consequence(
    attempt: &DeliveryAttempt,
    due: Millis,
) -> (OutboxStatus, &'static str, Millis, Option<Millis>) {
    match attempt.result {
        DeliveryResult::Delivered => (
            OutboxStatus::Delivered,
            "delivered",
            due,
            Some(attempt.started_at.saturating_add(attempt.duration_ms)),
        ),
        DeliveryResult::RetryAt(at) => (OutboxStatus::Pending, "failed", at, None),
        DeliveryResult::Dead => (OutboxStatus::Dead, "dead", due, None),
        DeliveryResult::Blocked => (OutboxStatus::Blocked, "blocked", due, None),
    }
}

/// [`record_delivery`] for several attempts of `owner`'s. An event that no longer exists, or
/// whose lease `owner` lost, is `false` and left alone: one missing row must not keep the others
/// unrecorded. Each event id appears once.
///
/// SQLite takes a few statements whatever the number of attempts, because each statement is a
/// round trip to the thread that owns its connection; the servers take a statement per attempt,
/// because the multi-row form (an `UPDATE` of `CASE id WHEN …` columns) measured slower there
/// (bench/README, 7 December 2026: −3% on PostgreSQL, −6% on MariaDB, +15–20% on SQLite).
pub(crate) async fn record_deliveries<C: Conn>(
    c: &mut C,
    owner: &str,
    attempts: &[(String, DeliveryAttempt)],
) -> DbResult<Vec<bool>> {
    if C::DIALECT.several_statements == SeveralStatements::Joined {
        record_deliveries_in_bulk(c, owner, attempts).await
    } else {
        record_deliveries_one_by_one(c, owner, attempts).await
    }
}

/// In event id order, so that two workers that lock the same events lock them in the same order.
async fn record_deliveries_one_by_one<C: Conn>(
    c: &mut C,
    owner: &str,
    attempts: &[(String, DeliveryAttempt)],
) -> DbResult<Vec<bool>> {
    let mut order: Vec<usize> = (0..attempts.len()).collect();
    order.sort_by(|&a, &b| attempts[a].0.cmp(&attempts[b].0));
    let mut kept = vec![false; attempts.len()];
    for i in order {
        let (event_id, attempt) = &attempts[i];
        kept[i] = match record_delivery(c, event_id, owner, attempt).await {
            Ok(kept) => kept,
            Err(e) if !e.transient && matches!(e.error, StorageError::NotFound) => false,
            Err(e) => return Err(e),
        };
    }
    Ok(kept)
}

/// The events locked in one statement (in id order), their earlier attempts counted in one, the
/// attempts inserted in one and the events updated in one.
async fn record_deliveries_in_bulk<C: Conn>(
    c: &mut C,
    owner: &str,
    attempts: &[(String, DeliveryAttempt)],
) -> DbResult<Vec<bool>> {
    if attempts.is_empty() {
        return Ok(Vec::new());
    }
    let mut locked = SqlBuilder::new(
        "SELECT id, status, lease_owner, next_attempt_at FROM outbox_events WHERE id IN (",
    );
    locked
        .push_bind_list(attempts.iter().map(|(id, _)| id.as_str()))
        .push(") ORDER BY id")
        .push(C::DIALECT.for_update);
    // Each event that is still `owner`'s: when it is due.
    let mut held: HashMap<String, Millis> = HashMap::new();
    for row in c.fetch_all(locked.build()).await? {
        let status = records::outbox_status(&row.text("status")?)?;
        if status == OutboxStatus::Pending && row.opt_text("lease_owner")?.as_deref() == Some(owner)
        {
            held.insert(row.text("id")?, row.int("next_attempt_at")?);
        }
    }
    let kept: Vec<bool> = attempts
        .iter()
        .map(|(id, _)| held.contains_key(id))
        .collect();
    if held.is_empty() {
        return Ok(kept);
    }
    let mut counted =
        SqlBuilder::new("SELECT event_id, COUNT(*) AS n FROM outbox_attempts WHERE event_id IN (");
    counted
        .push_bind_list(held.keys().map(String::as_str))
        .push(") GROUP BY event_id");
    let mut previous: HashMap<String, i64> = HashMap::new();
    for row in c.fetch_all(counted.build()).await? {
        previous.insert(row.text("event_id")?, row.int("n")?);
    }

    let recorded: Vec<(&str, &DeliveryAttempt, Millis)> = attempts
        .iter()
        .filter_map(|(id, a)| Some((id.as_str(), a, *held.get(id)?)))
        .collect();
    // Numbered over the event's whole life, as `record_delivery` numbers them.
    let mut insert = SqlBuilder::new(
        "INSERT INTO outbox_attempts (event_id, attempt, started_at, duration_ms, result, \
         response_code, error_message) VALUES ",
    );
    for (n, (id, attempt, due)) in recorded.iter().enumerate() {
        let (_, result, _, _) = consequence(attempt, *due);
        insert
            .push(if n == 0 { "(" } else { ", (" })
            .push_bind(*id)
            .push(", ")
            .push_bind(previous.get(*id).copied().unwrap_or(0) + 1)
            .push(", ")
            .push_bind(attempt.started_at)
            .push(", ")
            .push_bind(attempt.duration_ms)
            .push(", ")
            .push_bind(result)
            .push(", ")
            .push_bind(attempt.response_code)
            .push(", ")
            .push_bind(attempt.error.clone())
            .push(")");
    }
    type Value = fn(&DeliveryAttempt, Millis) -> Arg;
    const COLUMNS: [(&str, Value); 4] = [
        ("status = CASE id", |a, due| {
            consequence(a, due).0.as_str().into()
        }),
        ("next_attempt_at = CASE id", |a, due| {
            consequence(a, due).2.into()
        }),
        ("delivered_at = CASE id", |a, due| {
            consequence(a, due).3.into()
        }),
        ("last_error = CASE id", |a, _| a.error.clone().into()),
    ];
    let mut update = SqlBuilder::new("UPDATE outbox_events SET ");
    for (column, value) in COLUMNS {
        update.push(column);
        for (id, attempt, due) in &recorded {
            update
                .push(" WHEN ")
                .push_bind(*id)
                .push(" THEN ")
                .push_bind(value(attempt, *due));
        }
        update.push(" END, ");
    }
    update
        .push("attempts = attempts + 1, lease_owner = NULL, lease_until = NULL WHERE id IN (")
        .push_bind_list(recorded.iter().map(|(id, _, _)| *id))
        .push(")");
    c.execute_all(vec![insert.build(), update.build()]).await?;
    Ok(kept)
}

pub(crate) async fn retry<C: Conn>(c: &mut C, event_id: &str, now: Millis) -> DbResult<bool> {
    let changed = c
        .execute(
            Stmt::new(
                "UPDATE outbox_events SET status = 'pending', attempts = 0, next_attempt_at = $1, \
                 lease_owner = NULL, lease_until = NULL \
                 WHERE id = $2 AND status IN ('dead', 'blocked')",
            )
            .bind(now)
            .bind(event_id),
        )
        .await?;
    Ok(changed > 0)
}

const SELECT_BY_ID: &str = concat!(
    "SELECT ",
    outbox_columns!(),
    " FROM outbox_events WHERE id = $1"
);

pub(crate) async fn by_id<C: Conn>(c: &mut C, id: &str) -> DbResult<Option<OutboxEvent>> {
    let row = c.fetch_optional(Stmt::new(SELECT_BY_ID).bind(id)).await?;
    Ok(row.as_ref().map(records::outbox_event).transpose()?)
}

pub(crate) async fn list<C: Conn>(
    c: &mut C,
    filter: &OutboxFilter,
    page: &PageRequest,
) -> DbResult<Page<OutboxEvent>> {
    let keyset = Keyset::new(page)?;
    let mut q = SqlBuilder::new(concat!(
        "SELECT ",
        outbox_columns!(),
        " FROM outbox_events WHERE 1 = 1"
    ));
    if let Some(status) = filter.status {
        q.push(" AND status = ").push_bind(status.as_str());
    }
    if let Some(channel) = filter.channel {
        q.push(" AND channel = ").push_bind(channel.as_str());
    }
    if let Some(before) = &keyset.before_id {
        q.push(" AND id < ").push_bind(before);
    }
    q.push(" ORDER BY id DESC LIMIT ")
        .push_bind(keyset.fetch_limit());
    let rows = c.fetch_all(q.build()).await?;
    let items = rows
        .iter()
        .map(records::outbox_event)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(keyset.page(items, |e| &e.id))
}

pub(crate) async fn for_payment<C: Conn>(
    c: &mut C,
    payment_id: &str,
) -> DbResult<Vec<OutboxEvent>> {
    const SQL: &str = concat!(
        "SELECT ",
        outbox_columns!(),
        " FROM outbox_events WHERE payment_id = $1 ORDER BY created_at, id"
    );
    let rows = c.fetch_all(Stmt::new(SQL).bind(payment_id)).await?;
    Ok(rows
        .iter()
        .map(records::outbox_event)
        .collect::<Result<_, _>>()?)
}

pub(crate) async fn attempts<C: Conn>(c: &mut C, event_id: &str) -> DbResult<Vec<OutboxAttempt>> {
    let rows = c
        .fetch_all(
            Stmt::new(
                "SELECT id, event_id, attempt, started_at, duration_ms, result, response_code, \
                 error_message FROM outbox_attempts WHERE event_id = $1 ORDER BY id",
            )
            .bind(event_id),
        )
        .await?;
    Ok(rows
        .iter()
        .map(records::outbox_attempt)
        .collect::<Result<_, _>>()?)
}

pub(crate) async fn counts<C: Conn>(c: &mut C, now: Millis) -> DbResult<OutboxCounts> {
    let rows = c
        .fetch_all(Stmt::new(
            "SELECT status, COUNT(*) AS n FROM outbox_events GROUP BY status",
        ))
        .await?;
    let mut counts = OutboxCounts::default();
    for row in &rows {
        let n = row.int("n")?;
        match records::outbox_status(&row.text("status")?)? {
            OutboxStatus::Pending => counts.pending = n,
            OutboxStatus::Delivered => counts.delivered = n,
            OutboxStatus::Dead => counts.dead = n,
            OutboxStatus::Blocked => counts.blocked = n,
        }
    }
    counts.due = c
        .fetch_one(
            Stmt::new("SELECT COUNT(*) AS n FROM outbox_events WHERE status = 'pending' AND next_attempt_at <= $1")
                .bind(now),
        )
        .await?
        .int("n")?;
    Ok(counts)
}
