//! Idempotency keys, for any record a request creates (payments now; refunds, payouts and
//! payment links join the same way): a key is claimed in the transaction that creates the
//! record, so of concurrent identical requests at most one creates it, and the answer given is
//! stored against the key so a retry gets it again.
//!
//! The key's owner (`api_key_id` in the table) is a scope: an API key's id, or a door's own
//! name (the Telegram bot's `telegram-bot`). `payment_id` holds whichever record the key made.

use crate::db::{Conn, RowExt, Stmt};
use crate::error::{DbResult, StorageError};
use crate::model::*;
use crate::store::{MAX_KEY_LEN, check_len};

const SELECT_KEY: &str = "SELECT request_hash, payment_id, response_status, response_body \
                          FROM idempotency_keys WHERE api_key_id = $1 AND idem_key = $2";

/// Claims `claim`'s key for `record_id` (to be created in the same transaction). Anything but
/// [`KeyClaim::Claimed`] means the key was claimed before and nothing was written.
pub(crate) async fn claim<C: Conn>(
    c: &mut C,
    claim: &IdempotencyClaim,
    record_id: &str,
) -> DbResult<KeyClaim> {
    check_len("idempotency key", &claim.key, MAX_KEY_LEN)?;
    c.execute(
        Stmt::new(C::DIALECT.insert_idempotency_claim)
            .bind(&claim.api_key_id)
            .bind(&claim.key)
            .bind(&claim.request_hash)
            .bind(record_id)
            .bind(claim.created_at),
    )
    .await?;
    let record = find(c, &claim.api_key_id, &claim.key)
        .await?
        .ok_or_else(|| {
            StorageError::Corrupt("an idempotency key vanished as it was claimed".into())
        })?;
    Ok(if record.record_id == record_id {
        KeyClaim::Claimed
    } else {
        record.against(&claim.request_hash)
    })
}

/// The key as stored, if it was ever claimed.
pub(crate) async fn find<C: Conn>(
    c: &mut C,
    scope: &str,
    key: &str,
) -> DbResult<Option<IdempotencyRecord>> {
    if key.len() > MAX_KEY_LEN {
        return Ok(None);
    }
    let Some(row) = c
        .fetch_optional(Stmt::new(SELECT_KEY).bind(scope).bind(key))
        .await?
    else {
        return Ok(None);
    };
    let answer = match (
        row.opt_int32("response_status")?,
        row.opt_text("response_body")?,
    ) {
        (Some(status), Some(body)) => Some(StoredResponse {
            status: u16::try_from(status)
                .map_err(|_| StorageError::Corrupt(format!("stored response status {status}")))?,
            body,
        }),
        _ => None,
    };
    Ok(Some(IdempotencyRecord {
        request_hash: row.text("request_hash")?,
        record_id: row.text("payment_id")?,
        answer,
    }))
}

/// Records the answer given for a claimed key, unless one is kept already: the first answer
/// kept is the answer every retry gets (a concurrent retry's, kept later, does not replace it).
pub(crate) async fn save_response<C: Conn>(
    c: &mut C,
    scope: &str,
    key: &str,
    response: &StoredResponse,
) -> DbResult<()> {
    let changed = c
        .execute(
            Stmt::new(
                "UPDATE idempotency_keys SET response_status = $1, response_body = $2 \
                 WHERE api_key_id = $3 AND idem_key = $4 AND response_status IS NULL",
            )
            .bind(i64::from(response.status))
            .bind(&response.body)
            .bind(scope)
            .bind(key),
        )
        .await?;
    if changed == 0 && find(c, scope, key).await?.is_none() {
        return Err(StorageError::NotFound.into());
    }
    Ok(())
}
