-- A result that books a receipt on a payout or refund first looks for a request on which a
-- person recorded that receipt by hand (and a settlement by hand looks for it everywhere):
-- without an index each of them reads every initiator request.
--
-- Safe to run again (see 0001): MySQL 8 has no CREATE INDEX IF NOT EXISTS, so the index is added
-- only when information_schema does not list it.

SET @add_index = IF(
    EXISTS (SELECT 1 FROM information_schema.statistics
            WHERE table_schema = DATABASE() AND table_name = 'initiator_requests'
              AND index_name = 'ix_initiator_requests_receipt'),
    'DO 0',
    'ALTER TABLE initiator_requests ADD INDEX ix_initiator_requests_receipt (receipt)');
PREPARE add_index FROM @add_index;
EXECUTE add_index;
DEALLOCATE PREPARE add_index;
