-- Fewer index entries per callback (see the PostgreSQL file of the same name). MySQL and MariaDB
-- have no partial indexes, so only the indexes nothing needs go: no query looks callbacks up by
-- receipt, and (outcome, kind, id) serves a filter on outcome alone.
--
-- Safe to run again (see 0001): each DROP runs only while information_schema lists the index
-- (MySQL 8 has no DROP INDEX IF EXISTS).

SET @drop_receipt = IF(
    EXISTS (SELECT 1 FROM information_schema.statistics
            WHERE table_schema = DATABASE() AND table_name = 'callbacks'
              AND index_name = 'ix_callbacks_receipt'),
    'ALTER TABLE callbacks DROP INDEX ix_callbacks_receipt',
    'DO 0');
PREPARE drop_receipt FROM @drop_receipt;
EXECUTE drop_receipt;
DEALLOCATE PREPARE drop_receipt;

SET @drop_outcome = IF(
    EXISTS (SELECT 1 FROM information_schema.statistics
            WHERE table_schema = DATABASE() AND table_name = 'callbacks'
              AND index_name = 'ix_callbacks_outcome_id'),
    'ALTER TABLE callbacks DROP INDEX ix_callbacks_outcome_id',
    'DO 0');
PREPARE drop_outcome FROM @drop_outcome;
EXECUTE drop_outcome;
DEALLOCATE PREPARE drop_outcome;
