-- The orphan-callback pass and the dashboard filter callbacks by outcome AND kind, newest first.
-- With only (outcome, id) and (kind, id) the planner may walk every callback of a kind to find
-- the few unmatched ones.
--
-- Safe to run again (see 0001): MySQL 8 has no CREATE INDEX IF NOT EXISTS, so the index is added
-- only when information_schema does not list it.

SET @add_index = IF(
    EXISTS (SELECT 1 FROM information_schema.statistics
            WHERE table_schema = DATABASE() AND table_name = 'callbacks'
              AND index_name = 'ix_callbacks_outcome_kind_id'),
    'DO 0',
    'ALTER TABLE callbacks ADD INDEX ix_callbacks_outcome_kind_id (outcome, kind, id)');
PREPARE add_index FROM @add_index;
EXECUTE add_index;
DEALLOCATE PREPARE add_index;
