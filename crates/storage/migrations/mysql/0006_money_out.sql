-- Money out (issue 14): initiator requests, refunds, payouts, the daily payout limit.
-- Safe to run again (see 0001).

-- Outgoing initiator requests (B2C, Reversal, Transaction Status, Account Balance): stored
-- before they are sent, sent once; results are matched by OriginatorConversationID/ConversationID.
CREATE TABLE IF NOT EXISTS initiator_requests (
    id                          VARCHAR(64) NOT NULL,
    kind                        VARCHAR(32) NOT NULL,
    purpose                     VARCHAR(32) NOT NULL,
    owner_id                    VARCHAR(64) NULL,
    originator_conversation_id  VARCHAR(128) NULL,
    conversation_id             VARCHAR(128) NULL,
    status                      VARCHAR(16) NOT NULL,
    params                      MEDIUMTEXT NOT NULL,
    result_code                 MEDIUMTEXT NULL,
    result_desc                 MEDIUMTEXT NULL,
    receipt                     VARCHAR(64) NULL,
    result                      MEDIUMTEXT NULL,
    needs_review                BOOLEAN NOT NULL DEFAULT FALSE,
    attempts                    INT NOT NULL DEFAULT 0,
    next_check_at               BIGINT NULL,
    owner_notified_at           BIGINT NULL,
    created_at                  BIGINT NOT NULL,
    updated_at                  BIGINT NOT NULL,
    finalized_at                BIGINT NULL,
    version                     BIGINT NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY uq_initiator_requests_originator_conversation_id (originator_conversation_id),
    KEY ix_initiator_requests_conversation_id (conversation_id),
    KEY ix_initiator_requests_status_next_check_at (status, next_check_at),
    KEY ix_initiator_requests_owner (purpose, owner_id),
    KEY ix_initiator_requests_owner_notified (owner_notified_at, finalized_at),
    KEY ix_initiator_requests_created_at (created_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- The timeline of initiator requests, refunds and payouts (subject_id is ireq_/rfd_/po_).
CREATE TABLE IF NOT EXISTS money_out_events (
    id                          BIGINT NOT NULL AUTO_INCREMENT,
    subject_id                  VARCHAR(64) NOT NULL,
    occurred_at                 BIGINT NOT NULL,
    kind                        VARCHAR(64) NOT NULL,
    detail                      MEDIUMTEXT NOT NULL,
    PRIMARY KEY (id),
    KEY ix_money_out_events_subject_id (subject_id, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Refunds (M-Pesa Reversal of the whole payment). active_payment_id is the payment's id while the
-- refund is pending or completed and NULL once it failed: at most one refund per payment is
-- under way or done, decided by the unique key.
CREATE TABLE IF NOT EXISTS refunds (
    id                          VARCHAR(64) NOT NULL,
    payment_id                  VARCHAR(64) NOT NULL,
    active_payment_id           VARCHAR(64) NULL,
    status                      VARCHAR(16) NOT NULL,
    reason                      MEDIUMTEXT NOT NULL,
    amount                      BIGINT NOT NULL,
    payment_receipt             VARCHAR(64) NOT NULL,
    request_id                  VARCHAR(64) NULL,
    result_code                 MEDIUMTEXT NULL,
    result_desc                 MEDIUMTEXT NULL,
    reversal_receipt            VARCHAR(64) NULL,
    requested_by                MEDIUMTEXT NOT NULL,
    source                      VARCHAR(16) NOT NULL,
    api_key_id                  VARCHAR(64) NULL,
    created_at                  BIGINT NOT NULL,
    updated_at                  BIGINT NOT NULL,
    finalized_at                BIGINT NULL,
    version                     BIGINT NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY uq_refunds_active_payment_id (active_payment_id),
    KEY ix_refunds_payment_id (payment_id, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Payouts (B2C). eat_day: days since 1970-01-01 in East Africa Time, for the daily limit.
CREATE TABLE IF NOT EXISTS payouts (
    id                          VARCHAR(64) NOT NULL,
    status                      VARCHAR(32) NOT NULL,
    phone                       VARCHAR(20) NOT NULL,
    amount                      BIGINT NOT NULL,
    command                     VARCHAR(32) NOT NULL,
    remarks                     MEDIUMTEXT NOT NULL,
    occasion                    MEDIUMTEXT NULL,
    requested_by                MEDIUMTEXT NOT NULL,
    source                      VARCHAR(16) NOT NULL,
    api_key_id                  VARCHAR(64) NULL,
    decided_by                  MEDIUMTEXT NULL,
    decided_at                  BIGINT NULL,
    decision_note               MEDIUMTEXT NULL,
    request_id                  VARCHAR(64) NULL,
    receipt                     VARCHAR(64) NULL,
    recipient_name              MEDIUMTEXT NULL,
    utility_balance_cents       BIGINT NULL,
    result_code                 MEDIUMTEXT NULL,
    result_desc                 MEDIUMTEXT NULL,
    eat_day                     BIGINT NOT NULL,
    created_at                  BIGINT NOT NULL,
    updated_at                  BIGINT NOT NULL,
    finalized_at                BIGINT NULL,
    version                     BIGINT NOT NULL,
    PRIMARY KEY (id),
    KEY ix_payouts_status_id (status, id),
    KEY ix_payouts_phone_id (phone, id),
    KEY ix_payouts_created_at (created_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- What payouts reserve of PAYOUT_DAILY_LIMIT per East Africa Time day, in whole shillings: the
-- check and the reservation are one conditional UPDATE, so instances sharing the database share it.
CREATE TABLE IF NOT EXISTS payout_days (
    day                         BIGINT NOT NULL,
    reserved                    BIGINT NOT NULL,
    PRIMARY KEY (day)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
