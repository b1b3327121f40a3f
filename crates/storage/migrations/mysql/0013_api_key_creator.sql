-- api_keys.created_by: `admin:<username>` for a key made on the dashboard (NULL: made with the
-- command line, or before this column). The rule that another admin approves a payout or records
-- the outcome of a refund or payout counts a request made through a key as its creator's: one
-- admin could otherwise make a key, ask with it, and decide what they asked for. (MySQL commits
-- DDL at once: the column is added only if a first attempt has not added it.)
SET @add_column = IF(
    EXISTS (SELECT 1 FROM information_schema.columns
            WHERE table_schema = DATABASE() AND table_name = 'api_keys'
              AND column_name = 'created_by'),
    'DO 0',
    'ALTER TABLE api_keys ADD COLUMN created_by MEDIUMTEXT NULL');
PREPARE add_column FROM @add_column;
EXECUTE add_column;
DEALLOCATE PREPARE add_column;
