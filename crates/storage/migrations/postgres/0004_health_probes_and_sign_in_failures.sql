-- health_probes: one row per running gateway instance, rewritten by /health (at most every few
-- seconds) to prove that the write path works. Each instance writes only its own row, so
-- instances never wait for each other; rows of instances gone for a week are deleted.
CREATE TABLE health_probes (
    instance_id  TEXT NOT NULL,
    written_at   BIGINT NOT NULL,
    CONSTRAINT pk_health_probes PRIMARY KEY (instance_id)
);

-- sign_in_failures: failed dashboard sign-ins per (username, client address), in the database so
-- that every instance sharing it counts them together. The username is stored trimmed and
-- lower-cased. A successful sign-in deletes its row.
CREATE TABLE sign_in_failures (
    username        TEXT NOT NULL,
    address         TEXT NOT NULL,
    failures        BIGINT NOT NULL,
    last_failed_at  BIGINT NOT NULL,
    CONSTRAINT pk_sign_in_failures PRIMARY KEY (username, address)
);
CREATE INDEX ix_sign_in_failures_address ON sign_in_failures (address, last_failed_at);
CREATE INDEX ix_sign_in_failures_last_failed_at ON sign_in_failures (last_failed_at);
