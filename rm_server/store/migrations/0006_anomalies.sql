-- The anomaly tell (DESIGN.md §12): each source group's policy, the anomalies found (open
-- until an operator acknowledges them), the host's open anomaly on its row (the fleet list
-- reads it without a join), the repository size after each backup (the history plots) and
-- the repository's size over time (the fleet's growth view).
BEGIN;

ALTER TABLE source_groups ADD COLUMN anomaly TEXT NOT NULL DEFAULT '{}';

CREATE TABLE anomalies (
    id              TEXT PRIMARY KEY,
    host_id         TEXT NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
    source_group_id TEXT NOT NULL REFERENCES source_groups(id) ON DELETE CASCADE,
    job_id          TEXT NOT NULL,
    detected_at     TEXT NOT NULL,
    measure         TEXT NOT NULL,
    reason          TEXT NOT NULL,
    details         TEXT NOT NULL DEFAULT '{}',
    acknowledged_at TEXT,
    acknowledged_by TEXT,
    note            TEXT
);
CREATE INDEX anomalies_host ON anomalies(host_id, acknowledged_at);
CREATE INDEX anomalies_group ON anomalies(source_group_id, acknowledged_at);

ALTER TABLE hosts ADD COLUMN open_anomalies INTEGER NOT NULL DEFAULT 0;
ALTER TABLE hosts ADD COLUMN anomaly_reason TEXT;  -- the newest open anomaly's reason
ALTER TABLE hosts ADD COLUMN anomaly_at TEXT;

ALTER TABLE jobs ADD COLUMN repo_size INTEGER;  -- a backup: the repository's size after it

CREATE TABLE repo_sizes (
    host_id    TEXT NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
    at         TEXT NOT NULL,
    total_size INTEGER NOT NULL
);
CREATE INDEX repo_sizes_host ON repo_sizes(host_id, at);

PRAGMA user_version = 6;
COMMIT;
