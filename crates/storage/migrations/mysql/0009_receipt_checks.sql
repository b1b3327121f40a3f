-- Checking a receipt code with Safaricom (Transaction Status, issue 13).
-- Safe to run again (see 0001).
--
-- One row per check. active_code is the code while the check waits for Safaricom's answer and
-- NULL once it is answered or failed: at most one check of a code is in flight, decided by the
-- unique key (a second ask while one is in flight gets the same check). telegram_chats lists
-- the chats that asked (/paid), comma-separated, told once the answer came.
CREATE TABLE IF NOT EXISTS receipt_checks (
    id                          VARCHAR(64) NOT NULL,
    code                        VARCHAR(64) NOT NULL,
    active_code                 VARCHAR(64) NULL,
    status                      VARCHAR(16) NOT NULL,
    request_id                  VARCHAR(64) NULL,
    finding                     VARCHAR(32) NULL,
    outcome                     VARCHAR(32) NULL,
    result_code                 MEDIUMTEXT NULL,
    result_desc                 MEDIUMTEXT NULL,
    details                     MEDIUMTEXT NULL,
    payment_id                  VARCHAR(64) NULL,
    requested_by                MEDIUMTEXT NOT NULL,
    source                      VARCHAR(32) NOT NULL,
    telegram_chats              MEDIUMTEXT NOT NULL,
    created_at                  BIGINT NOT NULL,
    updated_at                  BIGINT NOT NULL,
    finalized_at                BIGINT NULL,
    version                     BIGINT NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY uq_receipt_checks_active_code (active_code),
    KEY ix_receipt_checks_code (code, created_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
