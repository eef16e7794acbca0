-- (PostgreSQL twin of ../0008_key_rotations.sql.) Repository key rotation: one row per
-- rotation, the new password sealed until it becomes the slot's password (in the same
-- transaction as the state change), the phase job it waits for, and the key ids the agent proved.

CREATE TABLE key_rotations (
    id          TEXT COLLATE "C" PRIMARY KEY,
    host_id     TEXT COLLATE "C" NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
    slot        TEXT COLLATE "C" NOT NULL,             -- repo | copy
    state       TEXT COLLATE "C" NOT NULL,             -- adding | rolling_back | committed | done | rolled_back
    keep_old    BIGINT NOT NULL DEFAULT 0,
    sealed      BYTEA,                                 -- the new credentials, sealed; NULL once committed or rolled back
    old_key_id  TEXT COLLATE "C",
    new_key_id  TEXT COLLATE "C",
    job_id      TEXT COLLATE "C",                      -- the phase job it waits for
    attempts    BIGINT NOT NULL DEFAULT 0,             -- jobs of the current phase so far
    error       TEXT COLLATE "C",
    created_at  TEXT COLLATE "C" NOT NULL,
    updated_at  TEXT COLLATE "C" NOT NULL
);
CREATE INDEX key_rotations_host ON key_rotations(host_id, state);
