-- Fewer index entries per settled payment and per callback.
--
-- Settling a payment changes indexed columns (status, receipt), so the new row version enters
-- every index of payments, and each callback's row enters every index of callbacks: writing
-- index entries was the largest part of PostgreSQL's work under a stream of callbacks. Indexes
-- that only ever look for a few rows now hold only those rows (partial indexes), so a settled
-- payment does not enter them. Each predicate is implied by the queries that use the index:
-- `payment_link_id = $1` implies NOT NULL, the due-check query names the same statuses, and the
-- list filter on held payments is written `AND needs_review`.
DROP INDEX ix_payments_needs_review_id;
CREATE INDEX ix_payments_needs_review_id ON payments (id) WHERE needs_review;
DROP INDEX ix_payments_status_next_check_at;
CREATE INDEX ix_payments_open_next_check_at ON payments (status, next_check_at)
    WHERE status IN ('initiated', 'pending');
DROP INDEX ix_payments_payment_link_id;
CREATE INDEX ix_payments_payment_link_id ON payments (payment_link_id, id)
    WHERE payment_link_id IS NOT NULL;
-- No query looks callbacks up by receipt (a stored confirmation is re-applied by its id).
DROP INDEX ix_callbacks_receipt;
-- (outcome, kind, id) serves a filter on outcome alone too: the outcomes looked for alone
-- (received, unmatched) are few, so sorting them costs little.
DROP INDEX ix_callbacks_outcome_id;
