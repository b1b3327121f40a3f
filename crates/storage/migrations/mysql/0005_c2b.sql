-- C2B: payments customers make from their own M-Pesa menu (paybill, till) are payments too.
--
-- payments.channel: 'stk' (we asked the phone) or 'c2b' (the customer paid on their own).
-- payments.phone stays NOT NULL, as on SQLite (which cannot drop the constraint): a C2B payment
-- whose MSISDN is masked or hashed has no phone, stored as ''. What Safaricom sent is kept as
-- given in payer_msisdn (a number, a SHA-256 hex, or masked).
-- recovered_by: NULL when the confirmation brought it, 'pull' or 'status' when a recovery did.
--
-- Safe to run again (see 0001): each ALTER runs only when information_schema does not list
-- what it adds (MySQL 8 has no ADD COLUMN IF NOT EXISTS).

SET @alter_payments = IF(
    EXISTS (SELECT 1 FROM information_schema.columns
            WHERE table_schema = DATABASE() AND table_name = 'payments'
              AND column_name = 'channel'),
    'DO 0',
    'ALTER TABLE payments
        ADD COLUMN channel VARCHAR(8) NOT NULL DEFAULT ''stk'',
        ADD COLUMN business_short_code VARCHAR(32) NULL,
        ADD COLUMN payer_name TEXT NULL,
        ADD COLUMN payer_msisdn VARCHAR(128) NULL,
        ADD COLUMN recovered_by VARCHAR(8) NULL,
        ADD INDEX ix_payments_channel_id (channel, id)');
PREPARE alter_payments FROM @alter_payments;
EXECUTE alter_payments;
DEALLOCATE PREPARE alter_payments;

-- The receipt (TransID) a C2B confirmation names: a stored confirmation is re-applied by it.
SET @alter_callbacks = IF(
    EXISTS (SELECT 1 FROM information_schema.columns
            WHERE table_schema = DATABASE() AND table_name = 'callbacks'
              AND column_name = 'receipt'),
    'DO 0',
    'ALTER TABLE callbacks
        ADD COLUMN receipt VARCHAR(64) NULL,
        ADD INDEX ix_callbacks_receipt (receipt)');
PREPARE alter_callbacks FROM @alter_callbacks;
EXECUTE alter_callbacks;
DEALLOCATE PREPARE alter_callbacks;

-- Account numbers the merchant registered through the API (C2B_REQUIRE_KNOWN_ACCOUNT). Kept
-- as given and matched case-insensitively: account_key is the trimmed, upper-cased form.
CREATE TABLE IF NOT EXISTS c2b_accounts (
    account_key  VARCHAR(64) NOT NULL,
    account      VARCHAR(255) NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (account_key)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
