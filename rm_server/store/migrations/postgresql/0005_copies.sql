-- (PostgreSQL twin of ../0005_copies.sql.) The second copy of a source group: a `copy`
-- credentials slot, each group's copy policy, the copy repository's last report, and the
-- host's copy lag (kept on the host row so the fleet list reads it without a join).

ALTER TABLE repo_credentials DROP CONSTRAINT repo_credentials_slot_check;
ALTER TABLE repo_credentials ADD CONSTRAINT repo_credentials_slot_check CHECK (slot IN ('repo', 'admin', 'copy'));

ALTER TABLE source_groups ADD COLUMN copy_enabled BIGINT NOT NULL DEFAULT 0;
ALTER TABLE source_groups ADD COLUMN copy_cron TEXT COLLATE "C";
ALTER TABLE source_groups ADD COLUMN copy_timezone TEXT COLLATE "C" NOT NULL DEFAULT 'UTC';
ALTER TABLE source_groups ADD COLUMN copy_max_lag_hours BIGINT NOT NULL DEFAULT 24;
ALTER TABLE source_groups ADD COLUMN copy_fired_at TEXT COLLATE "C";  -- the copy cron's last fire (or the policy's save)

ALTER TABLE hosts ADD COLUMN copy_enabled BIGINT NOT NULL DEFAULT 0;
ALTER TABLE hosts ADD COLUMN copy_behind_since TEXT COLLATE "C";
ALTER TABLE hosts ADD COLUMN copy_overdue_at TEXT COLLATE "C";
ALTER TABLE hosts ADD COLUMN copy_missing BIGINT NOT NULL DEFAULT 0;

CREATE TABLE copy_reports (
    host_id    TEXT COLLATE "C" PRIMARY KEY REFERENCES hosts(id) ON DELETE CASCADE,
    snapshots  TEXT COLLATE "C" NOT NULL,  -- the copy repository's snapshot list as the agent reported it
    stats      TEXT COLLATE "C",
    updated_at TEXT COLLATE "C" NOT NULL
);
