//! Who may use the gateway: API keys, admin users and their sessions, linked Telegram chats.

use crate::Millis;
use crate::db::{Conn, RowExt, Stmt};
use crate::error::{DbResult, StorageError};
use crate::model::*;
use crate::records;
use crate::store::check_len;

/// `last_used_at` is written at most this often per key, so that API traffic does not turn
/// every request into a write (SQLite has one writer).
pub(crate) const TOUCH_INTERVAL_MS: Millis = 60_000;

const NAME_LEN: usize = 128;

pub(crate) async fn create_api_key<C: Conn>(c: &mut C, key: &ApiKey) -> DbResult<()> {
    check_len("API key name", &key.name, NAME_LEN)?;
    c.execute(
        Stmt::new(
            "INSERT INTO api_keys (id, name, key_prefix, key_hash, created_at, revoked_at, \
             last_used_at, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&key.id)
        .bind(&key.name)
        .bind(&key.prefix)
        .bind(&key.hash)
        .bind(key.created_at)
        .bind(key.revoked_at)
        .bind(key.last_used_at)
        .bind(&key.created_by),
    )
    .await?;
    Ok(())
}

pub(crate) async fn api_key_by_hash<C: Conn>(c: &mut C, hash: &str) -> DbResult<Option<ApiKey>> {
    const SQL: &str = "SELECT id, name, key_prefix, key_hash, created_at, revoked_at, last_used_at, \
                       created_by FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL";
    let row = c.fetch_optional(Stmt::new(SQL).bind(hash)).await?;
    Ok(row.as_ref().map(records::api_key).transpose()?)
}

pub(crate) async fn api_keys<C: Conn>(c: &mut C) -> DbResult<Vec<ApiKey>> {
    let rows = c
        .fetch_all(Stmt::new(
            "SELECT id, name, key_prefix, key_hash, created_at, revoked_at, last_used_at, \
             created_by FROM api_keys ORDER BY created_at, id",
        ))
        .await?;
    Ok(rows
        .iter()
        .map(records::api_key)
        .collect::<Result<_, _>>()?)
}

pub(crate) async fn revoke_api_key<C: Conn>(
    c: &mut C,
    id_or_name: &str,
    now: Millis,
) -> DbResult<bool> {
    let changed = c
        .execute(
            Stmt::new("UPDATE api_keys SET revoked_at = $1 WHERE (id = $2 OR name = $3) AND revoked_at IS NULL")
                .bind(now)
                .bind(id_or_name)
                .bind(id_or_name),
        )
        .await?;
    Ok(changed > 0)
}

pub(crate) async fn touch_api_key<C: Conn>(c: &mut C, id: &str, now: Millis) -> DbResult<()> {
    c.execute(
        Stmt::new(
            "UPDATE api_keys SET last_used_at = $1 \
             WHERE id = $2 AND (last_used_at IS NULL OR last_used_at <= $3)",
        )
        .bind(now)
        .bind(id)
        .bind(now - TOUCH_INTERVAL_MS),
    )
    .await?;
    Ok(())
}

/// Creates the user or replaces the password of the existing one; true when created.
pub(crate) async fn upsert_admin_user<C: Conn>(c: &mut C, user: &AdminUser) -> DbResult<bool> {
    check_len("username", &user.username, NAME_LEN)?;
    c.execute(
        Stmt::new(C::DIALECT.insert_admin_user_if_absent)
            .bind(&user.id)
            .bind(&user.username)
            .bind(&user.password_hash)
            .bind(user.created_at),
    )
    .await?;
    let owner = c
        .fetch_one(Stmt::new("SELECT id FROM admin_users WHERE username = $1").bind(&user.username))
        .await?
        .text("id")?;
    if owner == user.id {
        return Ok(true);
    }
    c.execute(
        Stmt::new("UPDATE admin_users SET password_hash = $1 WHERE username = $2")
            .bind(&user.password_hash)
            .bind(&user.username),
    )
    .await?;
    // A new password ends every session the old one opened.
    c.execute(Stmt::new("DELETE FROM admin_sessions WHERE user_id = $1").bind(&owner))
        .await?;
    Ok(false)
}

pub(crate) async fn delete_admin_user<C: Conn>(c: &mut C, username: &str) -> DbResult<bool> {
    // Sessions first: the foreign key's cascade is not relied on (SQLite needs it switched on).
    delete_sessions_of(c, username).await?;
    let deleted = c
        .execute(Stmt::new("DELETE FROM admin_users WHERE username = $1").bind(username))
        .await?;
    Ok(deleted > 0)
}

pub(crate) async fn delete_sessions_of<C: Conn>(c: &mut C, username: &str) -> DbResult<u64> {
    c.execute(
        Stmt::new(
            "DELETE FROM admin_sessions WHERE user_id IN \
             (SELECT id FROM admin_users WHERE username = $1)",
        )
        .bind(username),
    )
    .await
}

/// Longest username or address kept in `sign_in_failures`.
const SIGN_IN_KEY_CHARS: usize = 64;

fn sign_in_key(s: &str) -> String {
    s.chars().take(SIGN_IN_KEY_CHARS).collect()
}

pub(crate) async fn begin_sign_in<C: Conn>(
    c: &mut C,
    username: &str,
    address: &str,
    now: Millis,
    address_since: Millis,
    decide: crate::DecideSignIn<'_>,
) -> DbResult<Option<Millis>> {
    let (username, address) = (sign_in_key(username), sign_in_key(address));
    let pair = c
        .fetch_optional(
            Stmt::with_suffix(
                "SELECT failures, last_failed_at FROM sign_in_failures \
             WHERE username = $1 AND address = $2",
                C::DIALECT.for_update,
            )
            .bind(&username)
            .bind(&address),
        )
        .await?;
    // Summed here rather than in SQL (MySQL sums integers as DECIMAL); the rows are few: an
    // address past its limit adds no more.
    let mut address_failures = 0i64;
    for row in c
        .fetch_all(
            Stmt::new(
                "SELECT failures FROM sign_in_failures WHERE address = $1 AND last_failed_at >= $2",
            )
            .bind(&address)
            .bind(address_since),
        )
        .await?
    {
        address_failures = address_failures.saturating_add(row.int("failures")?);
    }
    let failures = SignInFailures {
        pair_failures: pair
            .as_ref()
            .map(|r| r.int("failures"))
            .transpose()?
            .unwrap_or(0),
        pair_last_failed_at: pair.as_ref().map(|r| r.int("last_failed_at")).transpose()?,
        address_failures,
    };
    let refused = decide(&failures);
    if refused.is_none() {
        c.execute(
            Stmt::new(C::DIALECT.count_sign_in_failure)
                .bind(&username)
                .bind(&address)
                .bind(now),
        )
        .await?;
    }
    Ok(refused)
}

pub(crate) async fn clear_sign_in_failures<C: Conn>(
    c: &mut C,
    username: &str,
    address: &str,
) -> DbResult<()> {
    c.execute(
        Stmt::new("DELETE FROM sign_in_failures WHERE username = $1 AND address = $2")
            .bind(sign_in_key(username))
            .bind(sign_in_key(address)),
    )
    .await?;
    Ok(())
}

pub(crate) async fn delete_sign_in_failures_before<C: Conn>(
    c: &mut C,
    before: Millis,
) -> DbResult<u64> {
    c.execute(Stmt::new("DELETE FROM sign_in_failures WHERE last_failed_at < $1").bind(before))
        .await
}

pub(crate) async fn admin_user<C: Conn>(c: &mut C, username: &str) -> DbResult<Option<AdminUser>> {
    let row = c
        .fetch_optional(
            Stmt::new("SELECT id, username, password_hash, created_at FROM admin_users WHERE username = $1")
                .bind(username),
        )
        .await?;
    Ok(row.as_ref().map(records::admin_user).transpose()?)
}

pub(crate) async fn admin_users<C: Conn>(c: &mut C) -> DbResult<Vec<AdminUser>> {
    let rows = c
        .fetch_all(Stmt::new(
            "SELECT id, username, password_hash, created_at FROM admin_users ORDER BY username",
        ))
        .await?;
    Ok(rows
        .iter()
        .map(records::admin_user)
        .collect::<Result<_, _>>()?)
}

pub(crate) async fn create_session<C: Conn>(c: &mut C, s: &AdminSession) -> DbResult<()> {
    c.execute(
        Stmt::new(
            "INSERT INTO admin_sessions (token_hash, user_id, username, csrf_token, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&s.token_hash)
        .bind(&s.user_id)
        .bind(&s.username)
        .bind(&s.csrf_token)
        .bind(s.created_at)
        .bind(s.expires_at),
    )
    .await?;
    Ok(())
}

pub(crate) async fn session<C: Conn>(
    c: &mut C,
    token_hash: &str,
    now: Millis,
) -> DbResult<Option<AdminSession>> {
    let row = c
        .fetch_optional(
            Stmt::new(
                "SELECT token_hash, user_id, username, csrf_token, created_at, expires_at \
                 FROM admin_sessions WHERE token_hash = $1 AND expires_at > $2",
            )
            .bind(token_hash)
            .bind(now),
        )
        .await?;
    Ok(row.as_ref().map(records::admin_session).transpose()?)
}

pub(crate) async fn delete_session<C: Conn>(c: &mut C, token_hash: &str) -> DbResult<()> {
    c.execute(Stmt::new("DELETE FROM admin_sessions WHERE token_hash = $1").bind(token_hash))
        .await?;
    Ok(())
}

pub(crate) async fn delete_expired_sessions<C: Conn>(c: &mut C, now: Millis) -> DbResult<u64> {
    c.execute(Stmt::new("DELETE FROM admin_sessions WHERE expires_at <= $1").bind(now))
        .await
}

pub(crate) async fn link_telegram_chat<C: Conn>(c: &mut C, link: &TelegramLink) -> DbResult<()> {
    c.execute(
        Stmt::new(C::DIALECT.upsert_telegram_link)
            .bind(link.chat_id)
            .bind(link.user_id)
            .bind(&link.phone)
            .bind(link.linked_at),
    )
    .await?;
    Ok(())
}

pub(crate) async fn telegram_link<C: Conn>(
    c: &mut C,
    chat_id: i64,
) -> DbResult<Option<TelegramLink>> {
    const SQL: &str = "SELECT chat_id, user_id, phone, linked_at, blocked_at FROM telegram_links WHERE chat_id = $1";
    let row = c.fetch_optional(Stmt::new(SQL).bind(chat_id)).await?;
    Ok(row.as_ref().map(records::telegram_link).transpose()?)
}

/// The chat to send a phone's receipts to: the most recently linked one that has not blocked
/// the bot, else the most recent blocked one (so the caller sees why nothing can be sent).
pub(crate) async fn telegram_chat_by_phone<C: Conn>(
    c: &mut C,
    phone: &str,
) -> DbResult<Option<TelegramLink>> {
    let row = c
        .fetch_optional(
            Stmt::new(
                "SELECT chat_id, user_id, phone, linked_at, blocked_at FROM telegram_links WHERE phone = $1 \
                 ORDER BY CASE WHEN blocked_at IS NULL THEN 0 ELSE 1 END, linked_at DESC, chat_id LIMIT 1",
            )
            .bind(phone),
        )
        .await?;
    Ok(row.as_ref().map(records::telegram_link).transpose()?)
}

pub(crate) async fn linked_phones<C: Conn>(c: &mut C) -> DbResult<Vec<String>> {
    let rows = c
        .fetch_all(Stmt::new(
            "SELECT DISTINCT phone FROM telegram_links WHERE blocked_at IS NULL",
        ))
        .await?;
    rows.iter()
        .map(|r| r.text("phone").map_err(Into::into))
        .collect()
}

/// The length limit of a registered account number (Safaricom's are up to 20 characters).
const MAX_ACCOUNT_LEN: usize = 64;

pub(crate) async fn add_c2b_account<C: Conn>(
    c: &mut C,
    account: &str,
    now: Millis,
) -> DbResult<bool> {
    let key = mpesa_domain::c2b::account_key(account);
    check_len("account", account.trim(), MAX_ACCOUNT_LEN)?;
    if is_c2b_account(c, account).await? {
        return Ok(false);
    }
    c.execute(
        Stmt::with_suffix(
            "INSERT INTO c2b_accounts (account_key, account, created_at) VALUES ($1, $2, $3)",
            C::DIALECT.insert_skipping_taken_keys,
        )
        .bind(&key)
        .bind(account.trim())
        .bind(now),
    )
    .await?;
    Ok(true)
}

pub(crate) async fn remove_c2b_account<C: Conn>(c: &mut C, account: &str) -> DbResult<bool> {
    let changed = c
        .execute(
            Stmt::new("DELETE FROM c2b_accounts WHERE account_key = $1")
                .bind(mpesa_domain::c2b::account_key(account)),
        )
        .await?;
    Ok(changed > 0)
}

pub(crate) async fn is_c2b_account<C: Conn>(c: &mut C, account: &str) -> DbResult<bool> {
    let row = c
        .fetch_optional(
            Stmt::new("SELECT 1 AS one FROM c2b_accounts WHERE account_key = $1")
                .bind(mpesa_domain::c2b::account_key(account)),
        )
        .await?;
    Ok(row.is_some())
}

pub(crate) async fn list_c2b_accounts<C: Conn>(c: &mut C) -> DbResult<Vec<C2bAccount>> {
    let rows = c
        .fetch_all(Stmt::new(
            "SELECT account, created_at FROM c2b_accounts ORDER BY account_key",
        ))
        .await?;
    rows.iter()
        .map(|r| {
            Ok(C2bAccount {
                account: r.text("account")?,
                created_at: r.int("created_at")?,
            })
        })
        .collect()
}

pub(crate) async fn unlink_telegram_chat<C: Conn>(c: &mut C, chat_id: i64) -> DbResult<bool> {
    let changed = c
        .execute(Stmt::new("DELETE FROM telegram_links WHERE chat_id = $1").bind(chat_id))
        .await?;
    Ok(changed > 0)
}

pub(crate) async fn mark_telegram_chat_blocked<C: Conn>(
    c: &mut C,
    chat_id: i64,
    now: Millis,
) -> DbResult<()> {
    c.execute(
        Stmt::new(
            "UPDATE telegram_links SET blocked_at = $1 WHERE chat_id = $2 AND blocked_at IS NULL",
        )
        .bind(now)
        .bind(chat_id),
    )
    .await?;
    Ok(())
}

/// Links the chat and removes other chats' links to the same number: a number recycled to a new
/// owner must not stay payable from its previous owner's chat.
pub(crate) async fn link_telegram_chat_exclusively<C: Conn>(
    c: &mut C,
    link: &TelegramLink,
) -> DbResult<u64> {
    let removed = c
        .execute(
            Stmt::new("DELETE FROM telegram_links WHERE phone = $1 AND chat_id <> $2")
                .bind(&link.phone)
                .bind(link.chat_id),
        )
        .await?;
    link_telegram_chat(c, link).await?;
    Ok(removed)
}

pub(crate) async fn put_telegram_status_message<C: Conn>(
    c: &mut C,
    message: &TelegramStatusMessage,
) -> DbResult<()> {
    if c.fetch_optional(
        Stmt::new("SELECT id FROM payments WHERE id = $1").bind(&message.payment_id),
    )
    .await?
    .is_none()
    {
        return Err(StorageError::NotFound.into());
    }
    c.execute(
        Stmt::new("DELETE FROM telegram_status_messages WHERE payment_id = $1")
            .bind(&message.payment_id),
    )
    .await?;
    c.execute(
        Stmt::new(
            "INSERT INTO telegram_status_messages (payment_id, chat_id, message_id, updated_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(&message.payment_id)
        .bind(message.chat_id)
        .bind(message.message_id)
        .bind(message.updated_at),
    )
    .await?;
    Ok(())
}

pub(crate) async fn telegram_status_message<C: Conn>(
    c: &mut C,
    payment_id: &str,
) -> DbResult<Option<TelegramStatusMessage>> {
    let row = c
        .fetch_optional(
            Stmt::new(
                "SELECT payment_id, chat_id, message_id, updated_at \
                 FROM telegram_status_messages WHERE payment_id = $1",
            )
            .bind(payment_id),
        )
        .await?;
    Ok(row
        .as_ref()
        .map(records::telegram_status_message)
        .transpose()?)
}
