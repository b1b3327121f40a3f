-- Checking a receipt code with Safaricom (Transaction Status, issue 13).
--
-- One row per check. active_code is the code while the check waits for Safaricom's answer and
-- NULL once it is answered or failed: at most one check of a code is in flight, decided by the
-- unique key (a second ask while one is in flight gets the same check). telegram_chats lists
-- the chats that asked (/paid), comma-separated, told once the answer came.
CREATE TABLE receipt_checks (
    id                          TEXT NOT NULL,
    code                        TEXT NOT NULL,
    active_code                 TEXT,
    status                      TEXT NOT NULL,
    request_id                  TEXT,
    finding                     TEXT,
    outcome                     TEXT,
    result_code                 TEXT,
    result_desc                 TEXT,
    details                     TEXT,
    payment_id                  TEXT,
    requested_by                TEXT NOT NULL,
    source                      TEXT NOT NULL,
    telegram_chats              TEXT NOT NULL,
    created_at                  INTEGER NOT NULL,
    updated_at                  INTEGER NOT NULL,
    finalized_at                INTEGER,
    version                     INTEGER NOT NULL,
    CONSTRAINT pk_receipt_checks PRIMARY KEY (id),
    CONSTRAINT uq_receipt_checks_active_code UNIQUE (active_code)
);
CREATE INDEX ix_receipt_checks_code ON receipt_checks (code, created_at);
