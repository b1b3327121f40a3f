-- The orphan-callback pass and the dashboard filter callbacks by outcome AND kind, newest first.
-- With only (outcome, id) and (kind, id) the planner may walk every callback of a kind to find
-- the few unmatched ones (1 s on 100,000 rows, every 5 s).

CREATE INDEX ix_callbacks_outcome_kind_id ON callbacks (outcome, kind, id);
