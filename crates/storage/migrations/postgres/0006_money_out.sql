-- Money out (issue 14): initiator requests, refunds, payouts, the daily payout limit.

-- Outgoing initiator requests (B2C, Reversal, Transaction Status, Account Balance): stored
-- before they are sent, sent once; results are matched by OriginatorConversationID/ConversationID.
CREATE TABLE initiator_requests (
    id                          TEXT COLLATE "C" NOT NULL,
    kind                        TEXT COLLATE "C" NOT NULL,
    purpose                     TEXT COLLATE "C" NOT NULL,
    owner_id                    TEXT COLLATE "C",
    originator_conversation_id  TEXT COLLATE "C",
    conversation_id             TEXT COLLATE "C",
    status                      TEXT COLLATE "C" NOT NULL,
    params                      TEXT NOT NULL,
    result_code                 TEXT,
    result_desc                 TEXT,
    receipt                     TEXT COLLATE "C",
    result                      TEXT,
    needs_review                BOOLEAN NOT NULL DEFAULT FALSE,
    attempts                    INTEGER NOT NULL DEFAULT 0,
    next_check_at               BIGINT,
    owner_notified_at           BIGINT,
    created_at                  BIGINT NOT NULL,
    updated_at                  BIGINT NOT NULL,
    finalized_at                BIGINT,
    version                     BIGINT NOT NULL,
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
    id                          BIGINT GENERATED ALWAYS AS IDENTITY,
    subject_id                  TEXT COLLATE "C" NOT NULL,
    occurred_at                 BIGINT NOT NULL,
    kind                        TEXT COLLATE "C" NOT NULL,
    detail                      TEXT NOT NULL,
    CONSTRAINT pk_money_out_events PRIMARY KEY (id)
);
CREATE INDEX ix_money_out_events_subject_id ON money_out_events (subject_id, id);

-- Refunds (M-Pesa Reversal of the whole payment). active_payment_id is the payment's id while the
-- refund is pending or completed and NULL once it failed: at most one refund per payment is
-- under way or done, decided by the unique key.
CREATE TABLE refunds (
    id                          TEXT COLLATE "C" NOT NULL,
    payment_id                  TEXT COLLATE "C" NOT NULL,
    active_payment_id           TEXT COLLATE "C",
    status                      TEXT COLLATE "C" NOT NULL,
    reason                      TEXT NOT NULL,
    amount                      BIGINT NOT NULL,
    payment_receipt             TEXT COLLATE "C" NOT NULL,
    request_id                  TEXT COLLATE "C",
    result_code                 TEXT,
    result_desc                 TEXT,
    reversal_receipt            TEXT COLLATE "C",
    requested_by                TEXT NOT NULL,
    source                      TEXT COLLATE "C" NOT NULL,
    api_key_id                  TEXT COLLATE "C",
    created_at                  BIGINT NOT NULL,
    updated_at                  BIGINT NOT NULL,
    finalized_at                BIGINT,
    version                     BIGINT NOT NULL,
    CONSTRAINT pk_refunds PRIMARY KEY (id),
    CONSTRAINT uq_refunds_active_payment_id UNIQUE (active_payment_id)
);
CREATE INDEX ix_refunds_payment_id ON refunds (payment_id, id);

-- Payouts (B2C). eat_day: days since 1970-01-01 in East Africa Time, for the daily limit.
CREATE TABLE payouts (
    id                          TEXT COLLATE "C" NOT NULL,
    status                      TEXT COLLATE "C" NOT NULL,
    phone                       TEXT COLLATE "C" NOT NULL,
    amount                      BIGINT NOT NULL,
    command                     TEXT COLLATE "C" NOT NULL,
    remarks                     TEXT NOT NULL,
    occasion                    TEXT,
    requested_by                TEXT NOT NULL,
    source                      TEXT COLLATE "C" NOT NULL,
    api_key_id                  TEXT COLLATE "C",
    decided_by                  TEXT,
    decided_at                  BIGINT,
    decision_note               TEXT,
    request_id                  TEXT COLLATE "C",
    receipt                     TEXT COLLATE "C",
    recipient_name              TEXT,
    utility_balance_cents       BIGINT,
    result_code                 TEXT,
    result_desc                 TEXT,
    eat_day                     BIGINT NOT NULL,
    created_at                  BIGINT NOT NULL,
    updated_at                  BIGINT NOT NULL,
    finalized_at                BIGINT,
    version                     BIGINT NOT NULL,
    CONSTRAINT pk_payouts PRIMARY KEY (id)
);
CREATE INDEX ix_payouts_status_id ON payouts (status, id);
CREATE INDEX ix_payouts_phone_id ON payouts (phone, id);
CREATE INDEX ix_payouts_created_at ON payouts (created_at);

-- What payouts reserve of PAYOUT_DAILY_LIMIT per East Africa Time day, in whole shillings: the
-- check and the reservation are one conditional UPDATE, so instances sharing the database share it.
CREATE TABLE payout_days (
    day                         BIGINT NOT NULL,
    reserved                    BIGINT NOT NULL,
    CONSTRAINT pk_payout_days PRIMARY KEY (day)
);
