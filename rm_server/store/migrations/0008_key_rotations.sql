-- Repository key rotation (DESIGN.md §12): one row per rotation, the new password sealed
-- until it becomes the slot's password (in the same transaction as the state change), the
-- phase job it waits for, and the key ids the agent proved.
BEGIN;

CREATE TABLE key_rotations (
    id          TEXT PRIMARY KEY,
    host_id     TEXT NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
    slot        TEXT NOT NULL,             -- repo | copy
    state       TEXT NOT NULL,             -- adding | rolling_back | committed | done | rolled_back
    keep_old    INTEGER NOT NULL DEFAULT 0,
    sealed      BLOB,                      -- the new credentials, sealed; NULL once committed or rolled back
    old_key_id  TEXT,
    new_key_id  TEXT,
    job_id      TEXT,                      -- the phase job it waits for
    attempts    INTEGER NOT NULL DEFAULT 0, -- jobs of the current phase so far
    error       TEXT,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE INDEX key_rotations_host ON key_rotations(host_id, state);

PRAGMA user_version = 8;
COMMIT;
