//! Settings (key/value) and named leases that let instances sharing a database agree.

use crate::Millis;
use crate::db::{Conn, RowExt, Stmt};
use crate::error::DbResult;
use crate::store::check_len;

const NAME_LEN: usize = 128;

pub(crate) async fn get<C: Conn>(c: &mut C, name: &str) -> DbResult<Option<String>> {
    let row = c
        .fetch_optional(Stmt::new("SELECT value FROM settings WHERE name = $1").bind(name))
        .await?;
    Ok(row.map(|r| r.text("value")).transpose()?)
}

pub(crate) async fn put<C: Conn>(c: &mut C, name: &str, value: &str, now: Millis) -> DbResult<()> {
    check_len("setting name", name, NAME_LEN)?;
    c.execute(
        Stmt::new(C::DIALECT.upsert_setting)
            .bind(name)
            .bind(value)
            .bind(now),
    )
    .await?;
    Ok(())
}

/// Stores `value` unless the setting exists; the value stored afterwards either way.
pub(crate) async fn put_if_absent<C: Conn>(
    c: &mut C,
    name: &str,
    value: &str,
    now: Millis,
) -> DbResult<String> {
    check_len("setting name", name, NAME_LEN)?;
    c.execute(
        Stmt::new(C::DIALECT.insert_setting_if_absent)
            .bind(name)
            .bind(value)
            .bind(now),
    )
    .await?;
    Ok(
        c.fetch_one(Stmt::new("SELECT value FROM settings WHERE name = $1").bind(name))
            .await?
            .text("value")?,
    )
}

/// Takes the lease if it is free or expired, renews it if it is already `owner`'s.
pub(crate) async fn acquire_lease<C: Conn>(
    c: &mut C,
    name: &str,
    owner: &str,
    now: Millis,
    until: Millis,
) -> DbResult<bool> {
    check_len("lease name", name, NAME_LEN)?;
    c.execute(
        Stmt::new(C::DIALECT.insert_lease_if_absent)
            .bind(name)
            .bind(owner)
            .bind(until),
    )
    .await?;
    c.execute(
        Stmt::new(
            "UPDATE leases SET owner = $1, expires_at = $2 \
             WHERE name = $3 AND (owner = $4 OR expires_at <= $5)",
        )
        .bind(owner)
        .bind(until)
        .bind(name)
        .bind(owner)
        .bind(now),
    )
    .await?;
    let holder = c
        .fetch_one(Stmt::new("SELECT owner FROM leases WHERE name = $1").bind(name))
        .await?
        .text("owner")?;
    Ok(holder == owner)
}

pub(crate) async fn release_lease<C: Conn>(c: &mut C, name: &str, owner: &str) -> DbResult<()> {
    c.execute(
        Stmt::new("DELETE FROM leases WHERE name = $1 AND owner = $2")
            .bind(name)
            .bind(owner),
    )
    .await?;
    Ok(())
}

/// Rows of `health_probes` not written for this long belong to instances that are gone.
const PROBE_ROWS_KEPT_MS: Millis = 7 * 24 * 3_600_000;

/// Rewrites this instance's probe row; deletes rows of instances gone for a week.
pub(crate) async fn write_probe<C: Conn>(
    c: &mut C,
    instance_id: &str,
    now: Millis,
) -> DbResult<()> {
    check_len("instance id", instance_id, 64)?;
    c.execute(
        Stmt::new(C::DIALECT.upsert_health_probe)
            .bind(instance_id)
            .bind(now),
    )
    .await?;
    c.execute(
        Stmt::new("DELETE FROM health_probes WHERE written_at < $1")
            .bind(now.saturating_sub(PROBE_ROWS_KEPT_MS)),
    )
    .await?;
    Ok(())
}
