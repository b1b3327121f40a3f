-- Settling a held payout or refund by hand, one at a time.
--
-- One row, rewritten by every settlement by hand before it checks that its receipt is recorded
-- nowhere else: a second settlement waits for the first to commit and then sees its receipt (on
-- Galera the second to commit fails certification and runs again). taken counts the tries, so
-- that each one changes the row: a write that changes nothing is not certified.
CREATE TABLE settle_by_hand_lock (
    id                          INTEGER NOT NULL,
    taken                       BIGINT NOT NULL,
    CONSTRAINT pk_settle_by_hand_lock PRIMARY KEY (id)
);
INSERT INTO settle_by_hand_lock (id, taken) VALUES (1, 0);
