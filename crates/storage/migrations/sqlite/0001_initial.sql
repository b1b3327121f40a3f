-- mpesa-gateway schema for SQLite (3.35 or newer).
--
-- Conventions shared by the three backends: money is INTEGER whole shillings, times are INTEGER
-- Unix milliseconds, ids are TEXT (SQLite compares text byte-wise, so `pay_` + UUIDv7 ids order
-- by time), booleans are 0/1 INTEGERs, raw bodies are BLOBs.
-- Unique constraints carry the same names on every backend (storage reports them by name).

CREATE TABLE payments (
    id                    TEXT NOT NULL,
    status                TEXT NOT NULL,
    phone                 TEXT NOT NULL,
    amount                INTEGER NOT NULL,
    reference             TEXT NOT NULL,
    description           TEXT NOT NULL,
    customer_email        TEXT,
    telegram_chat_id      INTEGER,
    metadata              TEXT,
    checkout_request_id   TEXT,
    merchant_request_id   TEXT,
    mpesa_receipt_number  TEXT,
    result_code           TEXT,
    result_desc           TEXT,
    transaction_date      INTEGER,
    needs_review          INTEGER NOT NULL DEFAULT 0 CHECK (needs_review IN (0, 1)),
    review_reason         TEXT,
    api_key_id            TEXT,
    source                TEXT NOT NULL,
    query_attempts        INTEGER NOT NULL DEFAULT 0,
    next_check_at         INTEGER,
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL,
    finalized_at          INTEGER,
    version               INTEGER NOT NULL DEFAULT 1,
    CONSTRAINT pk_payments PRIMARY KEY (id),
    CONSTRAINT uq_payments_checkout_request_id UNIQUE (checkout_request_id),
    CONSTRAINT uq_payments_mpesa_receipt_number UNIQUE (mpesa_receipt_number)
);
CREATE INDEX ix_payments_status_id ON payments (status, id);
CREATE INDEX ix_payments_phone_id ON payments (phone, id);
CREATE INDEX ix_payments_reference_id ON payments (reference, id);
CREATE INDEX ix_payments_created_at ON payments (created_at);
CREATE INDEX ix_payments_needs_review_id ON payments (needs_review, id);
CREATE INDEX ix_payments_status_next_check_at ON payments (status, next_check_at);

CREATE TABLE payment_events (
    id           INTEGER NOT NULL,
    payment_id   TEXT NOT NULL,
    occurred_at  INTEGER NOT NULL,
    kind         TEXT NOT NULL,
    detail       TEXT NOT NULL,
    CONSTRAINT pk_payment_events PRIMARY KEY (id),
    CONSTRAINT fk_payment_events_payment FOREIGN KEY (payment_id) REFERENCES payments (id)
);
CREATE INDEX ix_payment_events_payment_id ON payment_events (payment_id, id);

-- Every callback body as received, duplicates and garbage included.
CREATE TABLE callbacks (
    id                   TEXT NOT NULL,
    kind                 TEXT NOT NULL,
    received_at          INTEGER NOT NULL,
    remote_addr          TEXT,
    headers              TEXT NOT NULL,
    body                 BLOB NOT NULL,
    checkout_request_id  TEXT,
    payment_id           TEXT,
    outcome              TEXT NOT NULL,
    error_message        TEXT,
    CONSTRAINT pk_callbacks PRIMARY KEY (id),
    CONSTRAINT fk_callbacks_payment FOREIGN KEY (payment_id) REFERENCES payments (id)
);
CREATE INDEX ix_callbacks_checkout_request_id ON callbacks (checkout_request_id);
CREATE INDEX ix_callbacks_payment_id ON callbacks (payment_id, received_at);
CREATE INDEX ix_callbacks_outcome_id ON callbacks (outcome, id);
CREATE INDEX ix_callbacks_kind_id ON callbacks (kind, id);

-- Only the SHA-256 of a key is stored.
CREATE TABLE api_keys (
    id            TEXT NOT NULL,
    name          TEXT NOT NULL,
    key_prefix    TEXT NOT NULL,
    key_hash      TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    revoked_at    INTEGER,
    last_used_at  INTEGER,
    CONSTRAINT pk_api_keys PRIMARY KEY (id),
    CONSTRAINT uq_api_keys_name UNIQUE (name),
    CONSTRAINT uq_api_keys_key_hash UNIQUE (key_hash)
);

-- No foreign key to payments: the claim is inserted first, so that the unique key decides
-- between concurrent identical requests before any payment row exists.
CREATE TABLE idempotency_keys (
    api_key_id       TEXT NOT NULL,
    idem_key         TEXT NOT NULL,
    request_hash     TEXT NOT NULL,
    payment_id       TEXT NOT NULL,
    response_status  INTEGER,
    response_body    TEXT,
    created_at       INTEGER NOT NULL,
    CONSTRAINT pk_idempotency_keys PRIMARY KEY (api_key_id, idem_key)
);

CREATE TABLE outbox_events (
    id               TEXT NOT NULL,
    payment_id       TEXT,
    channel          TEXT NOT NULL,
    event_type       TEXT NOT NULL,
    destination      TEXT NOT NULL,
    payload          TEXT NOT NULL,
    dedupe_key       TEXT NOT NULL,
    status           TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    lease_owner      TEXT,
    lease_until      INTEGER,
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    delivered_at     INTEGER,
    CONSTRAINT pk_outbox_events PRIMARY KEY (id),
    CONSTRAINT uq_outbox_events_dedupe_key UNIQUE (dedupe_key),
    CONSTRAINT fk_outbox_events_payment FOREIGN KEY (payment_id) REFERENCES payments (id)
);
CREATE INDEX ix_outbox_events_status_next_attempt_at ON outbox_events (status, next_attempt_at);
CREATE INDEX ix_outbox_events_status_id ON outbox_events (status, id);
CREATE INDEX ix_outbox_events_channel_id ON outbox_events (channel, id);
CREATE INDEX ix_outbox_events_payment_id ON outbox_events (payment_id);

CREATE TABLE outbox_attempts (
    id             INTEGER NOT NULL,
    event_id       TEXT NOT NULL,
    attempt        INTEGER NOT NULL,
    started_at     INTEGER NOT NULL,
    duration_ms    INTEGER NOT NULL,
    result         TEXT NOT NULL,
    response_code  INTEGER,
    error_message  TEXT,
    CONSTRAINT pk_outbox_attempts PRIMARY KEY (id),
    CONSTRAINT fk_outbox_attempts_event FOREIGN KEY (event_id) REFERENCES outbox_events (id)
);
CREATE INDEX ix_outbox_attempts_event_id ON outbox_attempts (event_id, id);

CREATE TABLE admin_users (
    id             TEXT NOT NULL,
    username       TEXT NOT NULL,
    password_hash  TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    CONSTRAINT pk_admin_users PRIMARY KEY (id),
    CONSTRAINT uq_admin_users_username UNIQUE (username)
);

CREATE TABLE admin_sessions (
    token_hash  TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    username    TEXT NOT NULL,
    csrf_token  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    CONSTRAINT pk_admin_sessions PRIMARY KEY (token_hash),
    CONSTRAINT fk_admin_sessions_user FOREIGN KEY (user_id) REFERENCES admin_users (id) ON DELETE CASCADE
);
CREATE INDEX ix_admin_sessions_expires_at ON admin_sessions (expires_at);

CREATE TABLE telegram_links (
    chat_id     INTEGER NOT NULL,
    user_id     INTEGER NOT NULL,
    phone       TEXT NOT NULL,
    linked_at   INTEGER NOT NULL,
    blocked_at  INTEGER,
    CONSTRAINT pk_telegram_links PRIMARY KEY (chat_id)
);
CREATE INDEX ix_telegram_links_phone ON telegram_links (phone);

CREATE TABLE settings (
    name        TEXT NOT NULL,
    value       TEXT NOT NULL,
    updated_at  INTEGER NOT NULL,
    CONSTRAINT pk_settings PRIMARY KEY (name)
);

CREATE TABLE leases (
    name        TEXT NOT NULL,
    owner       TEXT NOT NULL,
    expires_at  INTEGER NOT NULL,
    CONSTRAINT pk_leases PRIMARY KEY (name)
);
