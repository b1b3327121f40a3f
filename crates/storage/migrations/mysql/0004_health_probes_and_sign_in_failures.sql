-- health_probes: one row per running gateway instance, rewritten by /health (at most every few
-- seconds) to prove that the write path works. Each instance writes only its own row, so
-- instances never wait for each other; rows of instances gone for a week are deleted.
--
-- sign_in_failures: failed dashboard sign-ins per (username, client address), in the database so
-- that every instance sharing it counts them together. The username is stored trimmed and
-- lower-cased. A successful sign-in deletes its row.
--
-- Safe to run again (see 0001).

CREATE TABLE IF NOT EXISTS health_probes (
    instance_id  VARCHAR(64) NOT NULL,
    written_at   BIGINT NOT NULL,
    PRIMARY KEY (instance_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS sign_in_failures (
    username        VARCHAR(64) NOT NULL,
    address         VARCHAR(64) NOT NULL,
    failures        BIGINT NOT NULL,
    last_failed_at  BIGINT NOT NULL,
    PRIMARY KEY (username, address),
    KEY ix_sign_in_failures_address (address, last_failed_at),
    KEY ix_sign_in_failures_last_failed_at (last_failed_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
