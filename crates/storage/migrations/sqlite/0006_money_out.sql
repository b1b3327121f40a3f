-- Money out (issue 14): initiator requests, refunds, payouts, the daily payout limit.

-- Outgoing initiator requests (B2C, Reversal, Transaction Status, Account Balance): stored
-- before they are sent, sent once; results are matched by OriginatorConversationID/ConversationID.
CREATE TABLE initiator_requests (
    id                          TEXT NOT NULL,
    kind                        TEXT NOT NULL,
    purpose                     TEXT NOT NULL,
    owner_id                    TEXT,
    originator_conversation_id  TEXT,
    conversation_id             TEXT,
    status                      TEXT NOT NULL,
    params                      TEXT NOT NULL,
    result_code                 TEXT,
    result_desc                 TEXT,
    receipt                     TEXT,
    result                      TEXT,
    needs_review                INTEGER NOT NULL DEFAULT 0 CHECK (needs_review IN (0, 1)),
    attempts                    INTEGER NOT NULL DEFAULT 0,
    next_check_at               INTEGER,
    owner_notified_at           INTEGER,
    created_at                  INTEGER NOT NULL,
    updated_at                  INTEGER NOT NULL,
    finalized_at                INTEGER,
    version                     INTEGER NOT NULL,
    CONSTRAINT pk_initiator_requests PRIMARY KEY (id),
    CONSTRAINT uq_initiator_requests_originator_conversation_id UNIQUE (originator_conversation_id)
);
CREATE INDEX ix_initiator_requests_conversation_id ON initiator_requests (conversation_id);
CREATE INDEX ix_initiator_requests_status_next_check_at ON initiator_requests (status, next_check_at);
CREATE INDEX ix_initiator_requests_owner ON initiator_requests (purpose, owner_id);
CREATE INDEX ix_initiator_requests_owner_notified ON initiator_requests (owner_notified_at, finalized_at);
CREATE INDEX ix_initiator_requests_created_at ON initiator_requests (created_at);

-- The timeline of initiator requests, refunds and payouts (subject_id is ireq_/rfd_/po_).
CREATE TABLE money_out_events (
    id                          INTEGER NOT NULL,
    subject_id                  TEXT NOT NULL,
    occurred_at                 INTEGER NOT NULL,
    kind                        TEXT NOT NULL,
    detail                      TEXT NOT NULL,
    CONSTRAINT pk_money_out_events PRIMARY KEY (id)
);
CREATE INDEX ix_money_out_events_subject_id ON money_out_events (subject_id, id);

-- Refunds (M-Pesa Reversal of the whole payment). active_payment_id is the payment's id while the
-- refund is pending or completed and NULL once it failed: at most one refund per payment is
-- under way or done, decided by the unique key.
CREATE TABLE refunds (
    id                          TEXT NOT NULL,
    payment_id                  TEXT NOT NULL,
    active_payment_id           TEXT,
    status                      TEXT NOT NULL,
    reason                      TEXT NOT NULL,
    amount                      INTEGER NOT NULL,
    payment_receipt             TEXT NOT NULL,
    request_id                  TEXT,
    result_code                 TEXT,
    result_desc                 TEXT,
    reversal_receipt            TEXT,
    requested_by                TEXT NOT NULL,
    source                      TEXT NOT NULL,
    api_key_id                  TEXT,
    created_at                  INTEGER NOT NULL,
    updated_at                  INTEGER NOT NULL,
    finalized_at                INTEGER,
    version                     INTEGER NOT NULL,
    CONSTRAINT pk_refunds PRIMARY KEY (id),
    CONSTRAINT uq_refunds_active_payment_id UNIQUE (active_payment_id)
);
CREATE INDEX ix_refunds_payment_id ON refunds (payment_id, id);

-- Payouts (B2C). eat_day: days since 1970-01-01 in East Africa Time, for the daily limit.
CREATE TABLE payouts (
    id                          TEXT NOT NULL,
    status                      TEXT NOT NULL,
    phone                       TEXT NOT NULL,
    amount                      INTEGER NOT NULL,
    command                     TEXT NOT NULL,
    remarks                     TEXT NOT NULL,
    occasion                    TEXT,
    requested_by                TEXT NOT NULL,
    source                      TEXT NOT NULL,
    api_key_id                  TEXT,
    decided_by                  TEXT,
    decided_at                  INTEGER,
    decision_note               TEXT,
    request_id                  TEXT,
    receipt                     TEXT,
    recipient_name              TEXT,
    utility_balance_cents       INTEGER,
    result_code                 TEXT,
    result_desc                 TEXT,
    eat_day                     INTEGER NOT NULL,
    created_at                  INTEGER NOT NULL,
    updated_at                  INTEGER NOT NULL,
    finalized_at                INTEGER,
    version                     INTEGER NOT NULL,
    CONSTRAINT pk_payouts PRIMARY KEY (id)
);
CREATE INDEX ix_payouts_status_id ON payouts (status, id);
CREATE INDEX ix_payouts_phone_id ON payouts (phone, id);
CREATE INDEX ix_payouts_created_at ON payouts (created_at);

-- What payouts reserve of PAYOUT_DAILY_LIMIT per East Africa Time day, in whole shillings: the
-- check and the reservation are one conditional UPDATE, so instances sharing the database share it.
CREATE TABLE payout_days (
    day                         INTEGER NOT NULL,
    reserved                    INTEGER NOT NULL,
    CONSTRAINT pk_payout_days PRIMARY KEY (day)
);
