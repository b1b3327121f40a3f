-- payment_links: links a business sends or prints (`PUBLIC_URL/pay/{slug}`). `open_account` is the
-- account number while the link is open and NULL once it is paid, expired or disabled, so that an
-- account number is unique among open links only. `paid_payment_id`: the payment that paid a
-- single-use link.
CREATE TABLE payment_links (
    id               TEXT NOT NULL,
    slug             TEXT NOT NULL,
    account_number   TEXT NOT NULL,
    open_account     TEXT NULL,
    title            TEXT NOT NULL,
    amount           BIGINT NULL,
    amount_min       BIGINT NULL,
    amount_max       BIGINT NULL,
    reference        TEXT NULL,
    description      TEXT NULL,
    single_use       BOOLEAN NOT NULL,
    expires_at       BIGINT NULL,
    status           TEXT NOT NULL,
    language         TEXT NULL,
    paid_payment_id  TEXT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    CONSTRAINT pk_payment_links PRIMARY KEY (id),
    CONSTRAINT uq_payment_links_slug UNIQUE (slug),
    CONSTRAINT uq_payment_links_open_account UNIQUE (open_account)
);
CREATE INDEX ix_payment_links_status_expires_at ON payment_links (status, expires_at);

ALTER TABLE payments ADD COLUMN payment_link_id TEXT NULL;
CREATE INDEX ix_payments_payment_link_id ON payments (payment_link_id, id);

-- rate_limits: fixed-window counters of the public pay page (per phone, link, client address),
-- in the database so that every instance sharing it counts together.
CREATE TABLE rate_limits (
    bucket        TEXT NOT NULL,
    window_start  BIGINT NOT NULL,
    hits          BIGINT NOT NULL,
    CONSTRAINT pk_rate_limits PRIMARY KEY (bucket)
);
CREATE INDEX ix_rate_limits_window_start ON rate_limits (window_start);
