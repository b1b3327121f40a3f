-- mpesa-gateway schema for MySQL (8.0.1 or newer) and MariaDB (10.6 or newer).
--
-- Conventions shared by the three backends: money is BIGINT whole shillings, times are BIGINT
-- Unix milliseconds, ids are text. Every table is InnoDB, utf8mb4 with the utf8mb4_bin
-- collation, so ids compare byte-wise (keyset pagination on `pay_` + UUIDv7 ids orders by time)
-- and foreign keys always match. Indexed text is VARCHAR; free text is TEXT so no input is ever
-- refused for its length.
-- Unique keys carry the same names on every backend (storage reports them by name).
--
-- MySQL commits DDL implicitly, so a migration cannot be rolled back half-way: every statement
-- here is safe to run again (CREATE TABLE IF NOT EXISTS with its indexes inline), and storage
-- re-runs a migration that a crash left marked as failed.

CREATE TABLE IF NOT EXISTS payments (
    id                    VARCHAR(64) NOT NULL,
    status                VARCHAR(16) NOT NULL,
    phone                 VARCHAR(20) NOT NULL,
    amount                BIGINT NOT NULL,
    reference             VARCHAR(64) NOT NULL,
    description           TEXT NOT NULL,
    customer_email        TEXT NULL,
    telegram_chat_id      BIGINT NULL,
    metadata              MEDIUMTEXT NULL,
    checkout_request_id   VARCHAR(255) NULL,
    merchant_request_id   TEXT NULL,
    mpesa_receipt_number  VARCHAR(64) NULL,
    result_code           TEXT NULL,
    result_desc           TEXT NULL,
    transaction_date      BIGINT NULL,
    needs_review          BOOLEAN NOT NULL DEFAULT FALSE,
    review_reason         TEXT NULL,
    api_key_id            VARCHAR(64) NULL,
    source                VARCHAR(16) NOT NULL,
    query_attempts        INT NOT NULL DEFAULT 0,
    next_check_at         BIGINT NULL,
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL,
    finalized_at          BIGINT NULL,
    version               BIGINT NOT NULL DEFAULT 1,
    PRIMARY KEY (id),
    UNIQUE KEY uq_payments_checkout_request_id (checkout_request_id),
    UNIQUE KEY uq_payments_mpesa_receipt_number (mpesa_receipt_number),
    KEY ix_payments_status_id (status, id),
    KEY ix_payments_phone_id (phone, id),
    KEY ix_payments_reference_id (reference, id),
    KEY ix_payments_created_at (created_at),
    KEY ix_payments_needs_review_id (needs_review, id),
    KEY ix_payments_status_next_check_at (status, next_check_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS payment_events (
    id           BIGINT NOT NULL AUTO_INCREMENT,
    payment_id   VARCHAR(64) NOT NULL,
    occurred_at  BIGINT NOT NULL,
    kind         VARCHAR(64) NOT NULL,
    detail       MEDIUMTEXT NOT NULL,
    PRIMARY KEY (id),
    KEY ix_payment_events_payment_id (payment_id, id),
    CONSTRAINT fk_payment_events_payment FOREIGN KEY (payment_id) REFERENCES payments (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Every callback body as received, duplicates and garbage included.
CREATE TABLE IF NOT EXISTS callbacks (
    id                   VARCHAR(64) NOT NULL,
    kind                 VARCHAR(32) NOT NULL,
    received_at          BIGINT NOT NULL,
    remote_addr          TEXT NULL,
    headers              MEDIUMTEXT NOT NULL,
    body                 MEDIUMBLOB NOT NULL,
    checkout_request_id  VARCHAR(255) NULL,
    payment_id           VARCHAR(64) NULL,
    outcome              VARCHAR(32) NOT NULL,
    error_message        TEXT NULL,
    PRIMARY KEY (id),
    KEY ix_callbacks_checkout_request_id (checkout_request_id),
    KEY ix_callbacks_payment_id (payment_id, received_at),
    KEY ix_callbacks_outcome_id (outcome, id),
    KEY ix_callbacks_kind_id (kind, id),
    CONSTRAINT fk_callbacks_payment FOREIGN KEY (payment_id) REFERENCES payments (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Only the SHA-256 of a key is stored.
CREATE TABLE IF NOT EXISTS api_keys (
    id            VARCHAR(64) NOT NULL,
    name          VARCHAR(128) NOT NULL,
    key_prefix    VARCHAR(64) NOT NULL,
    key_hash      VARCHAR(128) NOT NULL,
    created_at    BIGINT NOT NULL,
    revoked_at    BIGINT NULL,
    last_used_at  BIGINT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY uq_api_keys_name (name),
    UNIQUE KEY uq_api_keys_key_hash (key_hash)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- No foreign key to payments: the claim is inserted first, so that the unique key decides
-- between concurrent identical requests before any payment row exists.
CREATE TABLE IF NOT EXISTS idempotency_keys (
    api_key_id       VARCHAR(64) NOT NULL,
    idem_key         VARCHAR(255) NOT NULL,
    request_hash     VARCHAR(128) NOT NULL,
    payment_id       VARCHAR(64) NOT NULL,
    response_status  INT NULL,
    response_body    MEDIUMTEXT NULL,
    created_at       BIGINT NOT NULL,
    PRIMARY KEY (api_key_id, idem_key)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS outbox_events (
    id               VARCHAR(64) NOT NULL,
    payment_id       VARCHAR(64) NULL,
    channel          VARCHAR(16) NOT NULL,
    event_type       VARCHAR(64) NOT NULL,
    destination      TEXT NOT NULL,
    payload          MEDIUMTEXT NOT NULL,
    dedupe_key       VARCHAR(255) NOT NULL,
    status           VARCHAR(16) NOT NULL,
    attempts         INT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    lease_owner      VARCHAR(255) NULL,
    lease_until      BIGINT NULL,
    last_error       TEXT NULL,
    created_at       BIGINT NOT NULL,
    delivered_at     BIGINT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY uq_outbox_events_dedupe_key (dedupe_key),
    KEY ix_outbox_events_status_next_attempt_at (status, next_attempt_at),
    KEY ix_outbox_events_status_id (status, id),
    KEY ix_outbox_events_channel_id (channel, id),
    KEY ix_outbox_events_payment_id (payment_id),
    CONSTRAINT fk_outbox_events_payment FOREIGN KEY (payment_id) REFERENCES payments (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS outbox_attempts (
    id             BIGINT NOT NULL AUTO_INCREMENT,
    event_id       VARCHAR(64) NOT NULL,
    attempt        INT NOT NULL,
    started_at     BIGINT NOT NULL,
    duration_ms    BIGINT NOT NULL,
    result         VARCHAR(16) NOT NULL,
    response_code  INT NULL,
    error_message  TEXT NULL,
    PRIMARY KEY (id),
    KEY ix_outbox_attempts_event_id (event_id, id),
    CONSTRAINT fk_outbox_attempts_event FOREIGN KEY (event_id) REFERENCES outbox_events (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS admin_users (
    id             VARCHAR(64) NOT NULL,
    username       VARCHAR(128) NOT NULL,
    password_hash  VARCHAR(512) NOT NULL,
    created_at     BIGINT NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY uq_admin_users_username (username)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS admin_sessions (
    token_hash  VARCHAR(128) NOT NULL,
    user_id     VARCHAR(64) NOT NULL,
    username    VARCHAR(128) NOT NULL,
    csrf_token  VARCHAR(255) NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    PRIMARY KEY (token_hash),
    KEY ix_admin_sessions_expires_at (expires_at),
    CONSTRAINT fk_admin_sessions_user FOREIGN KEY (user_id) REFERENCES admin_users (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS telegram_links (
    chat_id     BIGINT NOT NULL,
    user_id     BIGINT NOT NULL,
    phone       VARCHAR(20) NOT NULL,
    linked_at   BIGINT NOT NULL,
    blocked_at  BIGINT NULL,
    PRIMARY KEY (chat_id),
    KEY ix_telegram_links_phone (phone)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS settings (
    name        VARCHAR(128) NOT NULL,
    value       MEDIUMTEXT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS leases (
    name        VARCHAR(128) NOT NULL,
    owner       VARCHAR(255) NOT NULL,
    expires_at  BIGINT NOT NULL,
    PRIMARY KEY (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
