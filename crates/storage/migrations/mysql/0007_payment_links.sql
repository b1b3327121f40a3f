-- payment_links: links a business sends or prints (`PUBLIC_URL/pay/{slug}`). `open_account` is the
-- account number while the link is open and NULL once it is paid, expired or disabled, so that an
-- account number is unique among open links only. `paid_payment_id`: the payment that paid a
-- single-use link.
--
-- rate_limits: fixed-window counters of the public pay page (per phone, link, client address),
-- in the database so that every instance sharing it counts together.
--
-- Safe to run again (see 0001): the column and its index are added only when
-- information_schema does not list them (MySQL 8 has no ADD COLUMN IF NOT EXISTS).

CREATE TABLE IF NOT EXISTS payment_links (
    id               VARCHAR(64) NOT NULL,
    slug             VARCHAR(64) NOT NULL,
    account_number   VARCHAR(16) NOT NULL,
    open_account     VARCHAR(16) NULL,
    title            TEXT NOT NULL,
    amount           BIGINT NULL,
    amount_min       BIGINT NULL,
    amount_max       BIGINT NULL,
    reference        VARCHAR(64) NULL,
    description      TEXT NULL,
    single_use       BOOLEAN NOT NULL,
    expires_at       BIGINT NULL,
    status           VARCHAR(16) NOT NULL,
    language         VARCHAR(8) NULL,
    paid_payment_id  VARCHAR(64) NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY uq_payment_links_slug (slug),
    UNIQUE KEY uq_payment_links_open_account (open_account),
    KEY ix_payment_links_status_expires_at (status, expires_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

SET @add_column = IF(
    EXISTS (SELECT 1 FROM information_schema.columns
            WHERE table_schema = DATABASE() AND table_name = 'payments'
              AND column_name = 'payment_link_id'),
    'DO 0',
    'ALTER TABLE payments ADD COLUMN payment_link_id VARCHAR(64) NULL, ADD INDEX ix_payments_payment_link_id (payment_link_id, id)');
PREPARE add_column FROM @add_column;
EXECUTE add_column;
DEALLOCATE PREPARE add_column;

CREATE TABLE IF NOT EXISTS rate_limits (
    bucket        VARCHAR(190) NOT NULL,
    window_start  BIGINT NOT NULL,
    hits          BIGINT NOT NULL,
    PRIMARY KEY (bucket),
    KEY ix_rate_limits_window_start (window_start)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
