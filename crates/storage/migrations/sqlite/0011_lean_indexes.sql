-- Fewer index entries per settled payment and per callback (see the PostgreSQL file of the same
-- name): every index a commit touches is more pages written to the WAL. SQLite uses a partial
-- index when the query's WHERE holds the index's WHERE term as written (or, for IS NOT NULL, a
-- comparison on the column), so the queries that use these spell their terms the same way.
DROP INDEX ix_payments_needs_review_id;
CREATE INDEX ix_payments_needs_review_id ON payments (id) WHERE needs_review;
DROP INDEX ix_payments_status_next_check_at;
CREATE INDEX ix_payments_open_next_check_at ON payments (status, next_check_at)
    WHERE status IN ('initiated', 'pending');
DROP INDEX ix_payments_payment_link_id;
CREATE INDEX ix_payments_payment_link_id ON payments (payment_link_id, id)
    WHERE payment_link_id IS NOT NULL;
DROP INDEX ix_callbacks_receipt;
DROP INDEX ix_callbacks_outcome_id;
