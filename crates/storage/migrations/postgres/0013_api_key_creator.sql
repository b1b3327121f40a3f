-- api_keys.created_by: `admin:<username>` for a key made on the dashboard (NULL: made with the
-- command line, or before this column). The rule that another admin approves a payout or records
-- the outcome of a refund or payout counts a request made through a key as its creator's: one
-- admin could otherwise make a key, ask with it, and decide what they asked for.
ALTER TABLE api_keys ADD COLUMN created_by TEXT NULL;
