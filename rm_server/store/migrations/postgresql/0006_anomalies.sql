-- (PostgreSQL twin of ../0006_anomalies.sql.) The anomaly tell: each source group's policy, the anomalies found (open
-- until an operator acknowledges them), the host's open anomaly on its row (the fleet list
-- reads it without a join), the repository size after each backup (the history plots) and
-- the repository's size over time (the fleet's growth view).

ALTER TABLE source_groups ADD COLUMN anomaly TEXT COLLATE "C" NOT NULL DEFAULT '{}';

CREATE TABLE anomalies (
    id              TEXT COLLATE "C" PRIMARY KEY,
    host_id         TEXT COLLATE "C" NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
    source_group_id TEXT COLLATE "C" NOT NULL REFERENCES source_groups(id) ON DELETE CASCADE,
    job_id          TEXT COLLATE "C" NOT NULL,
    detected_at     TEXT COLLATE "C" NOT NULL,
    measure         TEXT COLLATE "C" NOT NULL,
    reason          TEXT COLLATE "C" NOT NULL,
    details         TEXT COLLATE "C" NOT NULL DEFAULT '{}',
    acknowledged_at TEXT COLLATE "C",
    acknowledged_by TEXT COLLATE "C",
    note            TEXT COLLATE "C"
);
CREATE INDEX anomalies_host ON anomalies(host_id, acknowledged_at);
CREATE INDEX anomalies_group ON anomalies(source_group_id, acknowledged_at);

ALTER TABLE hosts ADD COLUMN open_anomalies BIGINT NOT NULL DEFAULT 0;
ALTER TABLE hosts ADD COLUMN anomaly_reason TEXT COLLATE "C";  -- the newest open anomaly's reason
ALTER TABLE hosts ADD COLUMN anomaly_at TEXT COLLATE "C";

ALTER TABLE jobs ADD COLUMN repo_size BIGINT;  -- a backup: the repository's size after it

CREATE TABLE repo_sizes (
    host_id    TEXT COLLATE "C" NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
    at         TEXT COLLATE "C" NOT NULL,
    total_size BIGINT NOT NULL
);
CREATE INDEX repo_sizes_host ON repo_sizes(host_id, at);

