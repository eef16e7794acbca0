-- The second copy of a source group (DESIGN.md §12): a `copy` credentials slot, each
-- group's copy policy, the copy repository's last report, and the host's copy lag (kept on
-- the host row so the fleet list reads it without a join or a JSON function).
BEGIN;

-- SQLite cannot alter a CHECK: the table is made anew (no table references it).
CREATE TABLE repo_credentials_new (
    host_id         TEXT NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
    slot            TEXT NOT NULL CHECK (slot IN ('repo', 'admin', 'copy')),
    url_redacted    TEXT NOT NULL,
    sealed          BLOB NOT NULL,
    key_fingerprint TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    PRIMARY KEY (host_id, slot)
);
INSERT INTO repo_credentials_new (host_id, slot, url_redacted, sealed, key_fingerprint, updated_at)
    SELECT host_id, slot, url_redacted, sealed, key_fingerprint, updated_at FROM repo_credentials;
DROP TABLE repo_credentials;
ALTER TABLE repo_credentials_new RENAME TO repo_credentials;

ALTER TABLE source_groups ADD COLUMN copy_enabled INTEGER NOT NULL DEFAULT 0;
ALTER TABLE source_groups ADD COLUMN copy_cron TEXT;
ALTER TABLE source_groups ADD COLUMN copy_timezone TEXT NOT NULL DEFAULT 'UTC';
ALTER TABLE source_groups ADD COLUMN copy_max_lag_hours INTEGER NOT NULL DEFAULT 24;
ALTER TABLE source_groups ADD COLUMN copy_fired_at TEXT;  -- the copy cron's last fire (or the policy's save)

ALTER TABLE hosts ADD COLUMN copy_enabled INTEGER NOT NULL DEFAULT 0;
ALTER TABLE hosts ADD COLUMN copy_behind_since TEXT;
ALTER TABLE hosts ADD COLUMN copy_overdue_at TEXT;
ALTER TABLE hosts ADD COLUMN copy_missing INTEGER NOT NULL DEFAULT 0;

CREATE TABLE copy_reports (
    host_id    TEXT PRIMARY KEY REFERENCES hosts(id) ON DELETE CASCADE,
    snapshots  TEXT NOT NULL,  -- the copy repository's snapshot list as the agent reported it
    stats      TEXT,
    updated_at TEXT NOT NULL
);

PRAGMA user_version = 5;
COMMIT;
