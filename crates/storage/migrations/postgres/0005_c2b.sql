-- C2B: payments customers make from their own M-Pesa menu (paybill, till) are payments too.
--
-- payments.channel: 'stk' (we asked the phone) or 'c2b' (the customer paid on their own).
-- payments.phone stays NOT NULL, as on SQLite (which cannot drop the constraint): a C2B payment
-- whose MSISDN is masked or hashed has no phone, stored as ''. What Safaricom sent is kept as
-- given in payer_msisdn (a number, a SHA-256 hex, or masked).
-- recovered_by: NULL when the confirmation brought it, 'pull' or 'status' when a recovery did.
ALTER TABLE payments
    ADD COLUMN channel TEXT COLLATE "C" NOT NULL DEFAULT 'stk',
    ADD COLUMN business_short_code TEXT COLLATE "C",
    ADD COLUMN payer_name TEXT,
    ADD COLUMN payer_msisdn TEXT COLLATE "C",
    ADD COLUMN recovered_by TEXT COLLATE "C";
CREATE INDEX ix_payments_channel_id ON payments (channel, id);

-- The receipt (TransID) a C2B confirmation names: a stored confirmation is re-applied by it.
ALTER TABLE callbacks ADD COLUMN receipt TEXT COLLATE "C";
CREATE INDEX ix_callbacks_receipt ON callbacks (receipt);

-- Account numbers the merchant registered through the API (C2B_REQUIRE_KNOWN_ACCOUNT). Kept
-- as given and matched case-insensitively: account_key is the trimmed, upper-cased form.
CREATE TABLE c2b_accounts (
    account_key  TEXT COLLATE "C" NOT NULL,
    account      TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    CONSTRAINT pk_c2b_accounts PRIMARY KEY (account_key)
);
