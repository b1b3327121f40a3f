use sqlx::error::{DatabaseError, ErrorKind};

/// What can go wrong in storage, in terms the gateway can act on.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The database cannot be reached, the pool is exhausted, or it kept aborting the
    /// transaction for conflicts (deadlocks) however often it was retried: a 503, not a 500.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("not found")]
    NotFound,
    /// A uniqueness rule was broken (names the rule, e.g. `api_keys.name`).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The server is older than we support, or the URL names no known backend.
    #[error("unsupported database: {0}")]
    Unsupported(String),
    /// A stored value that cannot be read back (e.g. an unknown status text).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The caller passed something storage cannot use: a page cursor that is not one of ours, a
    /// key longer than its column. A 4xx, not a 500.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    #[error("database error: {0}")]
    Database(String),
}

/// An error inside the crate, before it leaves as a [`StorageError`]. It remembers whether
/// the database aborted the transaction for a conflict (deadlock, serialization failure, lock
/// wait timeout, SQLite busy) that running the whole transaction again resolves.
#[derive(Debug)]
pub(crate) struct DbError {
    pub(crate) error: StorageError,
    pub(crate) transient: bool,
}

pub(crate) type DbResult<T> = std::result::Result<T, DbError>;

impl From<StorageError> for DbError {
    fn from(error: StorageError) -> Self {
        DbError {
            error,
            transient: false,
        }
    }
}

impl From<DbError> for StorageError {
    fn from(e: DbError) -> Self {
        e.error
    }
}

/// How a backend reads one of its server's error codes.
pub(crate) enum ServerErrorClass {
    /// The transaction was aborted for a conflict; run it again.
    Transient,
    /// The server cannot serve us now (shutting down, too many connections, disk full).
    Unavailable,
    /// Anything else: the driver-independent rules below decide.
    Other,
}

/// Maps a sqlx error to ours. `classify` reads the backend's own error codes; `unique_rule`
/// names the unique constraint that a unique violation broke.
pub(crate) fn map_sqlx_error(
    err: sqlx::Error,
    classify: fn(&dyn DatabaseError) -> ServerErrorClass,
    unique_rule: fn(&dyn DatabaseError) -> String,
) -> DbError {
    use sqlx::Error as E;
    let unavailable = |msg: String| DbError {
        error: StorageError::Unavailable(msg),
        transient: false,
    };
    match err {
        E::Database(db) => match classify(db.as_ref()) {
            ServerErrorClass::Transient => DbError {
                error: StorageError::Unavailable(format!(
                    "transaction aborted by a conflict with another one: {}",
                    db.message()
                )),
                transient: true,
            },
            ServerErrorClass::Unavailable => unavailable(db.message().to_owned()),
            ServerErrorClass::Other if db.kind() == ErrorKind::UniqueViolation => {
                StorageError::Conflict(unique_rule(db.as_ref())).into()
            }
            ServerErrorClass::Other => StorageError::Database(db.message().to_owned()).into(),
        },
        E::Io(_)
        | E::Tls(_)
        | E::PoolTimedOut
        | E::PoolClosed
        | E::WorkerCrashed
        | E::Protocol(_) => unavailable(err.to_string()),
        E::RowNotFound => StorageError::NotFound.into(),
        E::ColumnDecode { .. }
        | E::Decode(_)
        | E::ColumnNotFound(_)
        | E::ColumnIndexOutOfBounds { .. } => StorageError::Corrupt(err.to_string()).into(),
        // Configuration errors may quote the URL, which may hold a password: say less.
        E::Configuration(_) => {
            StorageError::Unsupported("invalid database configuration".into()).into()
        }
        other => StorageError::Database(other.to_string()).into(),
    }
}

/// The unique constraints of the schema: the name each backend reports (constraint or index
/// name; SQLite reports the columns instead) and the rule we tell callers.
const UNIQUE_RULES: &[(&str, &str)] = &[
    ("pk_payments", "payments.id"),
    (
        "uq_payments_checkout_request_id",
        "payments.checkout_request_id",
    ),
    (
        "uq_payments_mpesa_receipt_number",
        "payments.mpesa_receipt_number",
    ),
    ("pk_payment_events", "payment_events.id"),
    ("pk_callbacks", "callbacks.id"),
    ("pk_api_keys", "api_keys.id"),
    ("uq_api_keys_name", "api_keys.name"),
    ("uq_api_keys_key_hash", "api_keys.key_hash"),
    ("pk_idempotency_keys", "idempotency_keys.key"),
    ("pk_outbox_events", "outbox_events.id"),
    ("uq_outbox_events_dedupe_key", "outbox_events.dedupe_key"),
    ("pk_outbox_attempts", "outbox_attempts.id"),
    ("pk_admin_users", "admin_users.id"),
    ("uq_admin_users_username", "admin_users.username"),
    ("pk_admin_sessions", "admin_sessions.token_hash"),
    ("pk_telegram_links", "telegram_links.chat_id"),
    ("pk_settings", "settings.name"),
    ("pk_leases", "leases.name"),
    ("pk_health_probes", "health_probes.instance_id"),
    ("pk_sign_in_failures", "sign_in_failures.key"),
    ("pk_initiator_requests", "initiator_requests.id"),
    (
        "uq_initiator_requests_originator_conversation_id",
        "initiator_requests.originator_conversation_id",
    ),
    ("pk_refunds", "refunds.id"),
    ("uq_refunds_active_payment_id", "refunds.active_payment_id"),
    ("pk_payouts", "payouts.id"),
    ("pk_payout_days", "payout_days.day"),
    ("pk_settle_by_hand_lock", "settle_by_hand_lock.id"),
];

/// The rule a named constraint or index stands for; the name itself if it is not ours.
pub(crate) fn unique_rule_by_name(name: &str) -> String {
    UNIQUE_RULES
        .iter()
        .find(|(constraint, _)| *constraint == name)
        .map_or_else(|| name.to_owned(), |(_, rule)| (*rule).to_owned())
}

/// SQLite names the columns (`UNIQUE constraint failed: payments.checkout_request_id`), which
/// are our rule names but for composite keys.
pub(crate) fn unique_rule_from_sqlite_message(message: &str) -> String {
    let columns = message
        .split_once(": ")
        .map_or(message, |(_, cols)| cols)
        .trim();
    match columns {
        "idempotency_keys.api_key_id, idempotency_keys.idem_key" => {
            "idempotency_keys.key".to_owned()
        }
        other => other.to_owned(),
    }
}

/// MySQL and MariaDB name the index in the message: `Duplicate entry 'x' for key 'name'`
/// (MySQL 8 writes `'table.name'`, and calls every primary key `PRIMARY`).
pub(crate) fn unique_rule_from_mysql_message(message: &str) -> String {
    let key = message
        .rsplit_once("for key '")
        .map(|(_, rest)| rest.trim_end_matches('\''))
        .unwrap_or("");
    let (table, index) = match key.split_once('.') {
        Some((table, index)) => (Some(table), index),
        None => (None, key),
    };
    match (table, index) {
        (Some(table), "PRIMARY") => unique_rule_by_name(&format!("pk_{table}")),
        (None, "PRIMARY") => "primary key".to_owned(),
        (_, index) => unique_rule_by_name(index),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_rules_read_from_each_backend() {
        assert_eq!(unique_rule_by_name("uq_api_keys_name"), "api_keys.name");
        assert_eq!(unique_rule_by_name("something_else"), "something_else");
        assert_eq!(
            unique_rule_from_sqlite_message(
                "UNIQUE constraint failed: payments.mpesa_receipt_number"
            ),
            "payments.mpesa_receipt_number"
        );
        assert_eq!(
            unique_rule_from_sqlite_message(
                "UNIQUE constraint failed: idempotency_keys.api_key_id, idempotency_keys.idem_key"
            ),
            "idempotency_keys.key"
        );
        assert_eq!(
            unique_rule_from_mysql_message("Duplicate entry 'a' for key 'uq_api_keys_name'"),
            "api_keys.name"
        );
        assert_eq!(
            unique_rule_from_mysql_message(
                "Duplicate entry 'a' for key 'api_keys.uq_api_keys_name'"
            ),
            "api_keys.name"
        );
        assert_eq!(
            unique_rule_from_mysql_message("Duplicate entry 'a' for key 'payments.PRIMARY'"),
            "payments.id"
        );
        assert_eq!(
            unique_rule_from_mysql_message("Duplicate entry 'a' for key 'PRIMARY'"),
            "primary key"
        );
    }
}
