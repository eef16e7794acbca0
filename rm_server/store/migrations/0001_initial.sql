-- The first schema: every table the server needs. Times are ISO-8601 UTC text,
-- JSON columns are text, ids are ULID-style text sortable by creation time.
BEGIN;

CREATE TABLE operators (
    id            TEXT PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    role          TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    password_hash TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    disabled      INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE sessions (
    token_hash  TEXT PRIMARY KEY,
    operator_id TEXT NOT NULL REFERENCES operators(id) ON DELETE CASCADE,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL
);
CREATE INDEX sessions_operator ON sessions(operator_id);

CREATE TABLE enrollment_tokens (
    id            TEXT PRIMARY KEY,
    name          TEXT,
    token_hash    TEXT NOT NULL UNIQUE,
    created_at    TEXT NOT NULL,
    expires_at    TEXT NOT NULL,
    max_uses      INTEGER NOT NULL,
    uses          INTEGER NOT NULL DEFAULT 0,
    initial_paths TEXT NOT NULL DEFAULT '[]',
    repo_sealed   BLOB,            -- repo credentials sealed with the master key
    created_by    TEXT
);

CREATE TABLE hosts (
    id                       TEXT PRIMARY KEY,
    hostname                 TEXT NOT NULL,
    status                   TEXT NOT NULL DEFAULT 'pending',
    last_seen                TEXT,
    os                       TEXT NOT NULL DEFAULT '',
    arch                     TEXT NOT NULL DEFAULT '',
    agent_version            TEXT NOT NULL DEFAULT '',
    restic_version           TEXT,
    schedule_version         INTEGER NOT NULL DEFAULT 0,
    applied_schedule_version INTEGER NOT NULL DEFAULT 0,
    initial_paths            TEXT NOT NULL DEFAULT '[]',
    bandwidth                TEXT NOT NULL DEFAULT '{}',
    maintenance              TEXT NOT NULL DEFAULT '{}',
    stale                    INTEGER NOT NULL DEFAULT 0,
    last_backup_job_id       TEXT,     -- newest finished backup, kept here so the
    last_backup_state        TEXT,     -- fleet list needs no per-host job lookup
    last_backup_at           TEXT,
    last_success_at          TEXT,
    created_at               TEXT NOT NULL
);
CREATE INDEX hosts_hostname ON hosts(hostname);

CREATE TABLE agent_tokens (
    token_hash TEXT PRIMARY KEY,
    host_id    TEXT NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
    created_at TEXT NOT NULL
);
CREATE INDEX agent_tokens_host ON agent_tokens(host_id);

CREATE TABLE repo_credentials (
    host_id         TEXT NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
    slot            TEXT NOT NULL CHECK (slot IN ('repo', 'admin')),
    url_redacted    TEXT NOT NULL,
    sealed          BLOB NOT NULL,  -- AES-GCM under the master key in the data dir
    key_fingerprint TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    PRIMARY KEY (host_id, slot)
);

CREATE TABLE source_groups (
    id        TEXT PRIMARY KEY,
    host_id   TEXT NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
    name      TEXT NOT NULL,
    includes  TEXT NOT NULL,
    excludes  TEXT NOT NULL DEFAULT '[]',
    tag       TEXT NOT NULL,
    retention TEXT NOT NULL DEFAULT '{}',
    pre_hook  TEXT,
    post_hook TEXT,
    UNIQUE (host_id, name)
);

CREATE TABLE schedules (
    id         TEXT PRIMARY KEY,
    host_id    TEXT NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    cron       TEXT,
    timezone   TEXT NOT NULL DEFAULT 'UTC',
    enabled    INTEGER NOT NULL DEFAULT 1,
    manual     INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL
);
CREATE INDEX schedules_host ON schedules(host_id);

CREATE TABLE schedule_groups (
    schedule_id     TEXT NOT NULL REFERENCES schedules(id) ON DELETE CASCADE,
    source_group_id TEXT NOT NULL REFERENCES source_groups(id) ON DELETE RESTRICT,
    position        INTEGER NOT NULL,
    PRIMARY KEY (schedule_id, source_group_id)
);
CREATE INDEX schedule_groups_group ON schedule_groups(source_group_id);

CREATE TABLE schedule_fires (
    fire_id      TEXT PRIMARY KEY,
    host_id      TEXT NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
    schedule_id  TEXT NOT NULL,
    scheduled_at TEXT NOT NULL,
    received_at  TEXT NOT NULL
);

CREATE TABLE jobs (
    id              TEXT PRIMARY KEY,
    host_id         TEXT NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
    kind            TEXT NOT NULL,
    state           TEXT NOT NULL,
    actor_kind      TEXT NOT NULL,
    actor_id        TEXT,
    schedule_id     TEXT,
    source_group_id TEXT,
    params          TEXT NOT NULL DEFAULT '{}',
    created_at      TEXT NOT NULL,
    dispatched_at   TEXT,
    started_at      TEXT,
    finished_at     TEXT,
    exit_code       INTEGER,
    summary         TEXT,
    error           TEXT,
    acked_seq       INTEGER NOT NULL DEFAULT 0,  -- highest event seq stored without a gap
    log_lines       INTEGER NOT NULL DEFAULT 0,  -- lines kept
    log_dropped     INTEGER NOT NULL DEFAULT 0   -- lines dropped by the retention cap
);
CREATE INDEX jobs_host_id ON jobs(host_id, id);
CREATE INDEX jobs_state ON jobs(state, id);
CREATE INDEX jobs_group ON jobs(source_group_id, kind, state);

CREATE TABLE job_logs (
    job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    seq    INTEGER NOT NULL,
    ts     TEXT NOT NULL,
    stream TEXT NOT NULL,
    text   TEXT NOT NULL,
    PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;

CREATE TABLE snapshots (
    host_id  TEXT NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
    id       TEXT NOT NULL,
    short_id TEXT,
    time     TEXT NOT NULL,
    hostname TEXT,
    paths    TEXT NOT NULL DEFAULT '[]',
    tags     TEXT NOT NULL DEFAULT '[]',
    summary  TEXT,
    PRIMARY KEY (host_id, id)
);

CREATE TABLE repo_stats (
    host_id    TEXT PRIMARY KEY REFERENCES hosts(id) ON DELETE CASCADE,
    stats      TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE audit (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    ts         TEXT NOT NULL,
    actor_kind TEXT NOT NULL,
    actor_id   TEXT,
    actor_name TEXT,
    action     TEXT NOT NULL,
    target     TEXT,
    details    TEXT NOT NULL DEFAULT '{}'
);

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

PRAGMA user_version = 1;
COMMIT;
