-- Settling a held payout or refund by hand, one at a time.
-- Safe to run again (see 0001).
--
-- One row, rewritten by every settlement by hand before it checks that its receipt is recorded
-- nowhere else: a second settlement waits for the first to commit and then sees its receipt (on
-- Galera the second to commit fails certification and runs again). taken counts the tries, so
-- that each one changes the row: a write that changes nothing is not certified.
CREATE TABLE IF NOT EXISTS settle_by_hand_lock (
    id                          INT NOT NULL,
    taken                       BIGINT NOT NULL,
    PRIMARY KEY (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
INSERT INTO settle_by_hand_lock (id, taken) VALUES (1, 0) ON DUPLICATE KEY UPDATE id = id;
