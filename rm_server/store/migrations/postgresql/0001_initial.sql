-- The first schema (PostgreSQL twin of ../0001_initial.sql): every table the server needs. Times are ISO-8601 UTC text,
-- JSON columns are text, ids are ULID-style text sortable by creation time.

CREATE TABLE operators (
    id            TEXT COLLATE "C" PRIMARY KEY,
    username      TEXT COLLATE "C" NOT NULL UNIQUE,
    role          TEXT COLLATE "C" NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    password_hash TEXT COLLATE "C" NOT NULL,
    created_at    TEXT COLLATE "C" NOT NULL,
    disabled      BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE sessions (
    token_hash  TEXT COLLATE "C" PRIMARY KEY,
    operator_id TEXT COLLATE "C" NOT NULL REFERENCES operators(id) ON DELETE CASCADE,
    created_at  TEXT COLLATE "C" NOT NULL,
    expires_at  TEXT COLLATE "C" NOT NULL
);
CREATE INDEX sessions_operator ON sessions(operator_id);

CREATE TABLE enrollment_tokens (
    id            TEXT COLLATE "C" PRIMARY KEY,
    name          TEXT COLLATE "C",
    token_hash    TEXT COLLATE "C" NOT NULL UNIQUE,
    created_at    TEXT COLLATE "C" NOT NULL,
    expires_at    TEXT COLLATE "C" NOT NULL,
    max_uses      BIGINT NOT NULL,
    uses          BIGINT NOT NULL DEFAULT 0,
    initial_paths TEXT COLLATE "C" NOT NULL DEFAULT '[]',
    repo_sealed   BYTEA,            -- repo credentials sealed with the master key
    created_by    TEXT COLLATE "C"
);

CREATE TABLE hosts (
    id                       TEXT COLLATE "C" PRIMARY KEY,
    hostname                 TEXT COLLATE "C" NOT NULL,
    status                   TEXT COLLATE "C" NOT NULL DEFAULT 'pending',
    last_seen                TEXT COLLATE "C",
    os                       TEXT COLLATE "C" NOT NULL DEFAULT '',
    arch                     TEXT COLLATE "C" NOT NULL DEFAULT '',
    agent_version            TEXT COLLATE "C" NOT NULL DEFAULT '',
    restic_version           TEXT COLLATE "C",
    schedule_version         BIGINT NOT NULL DEFAULT 0,
    applied_schedule_version BIGINT NOT NULL DEFAULT 0,
    initial_paths            TEXT COLLATE "C" NOT NULL DEFAULT '[]',
    bandwidth                TEXT COLLATE "C" NOT NULL DEFAULT '{}',
    maintenance              TEXT COLLATE "C" NOT NULL DEFAULT '{}',
    stale                    BIGINT NOT NULL DEFAULT 0,
    last_backup_job_id       TEXT COLLATE "C",     -- newest finished backup, kept here so the
    last_backup_state        TEXT COLLATE "C",     -- fleet list needs no per-host job lookup
    last_backup_at           TEXT COLLATE "C",
    last_success_at          TEXT COLLATE "C",
    created_at               TEXT COLLATE "C" NOT NULL
);
CREATE INDEX hosts_hostname ON hosts(hostname);

CREATE TABLE agent_tokens (
    token_hash TEXT COLLATE "C" PRIMARY KEY,
    host_id    TEXT COLLATE "C" NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
    created_at TEXT COLLATE "C" NOT NULL
);
CREATE INDEX agent_tokens_host ON agent_tokens(host_id);

CREATE TABLE repo_credentials (
    host_id         TEXT COLLATE "C" NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
    slot            TEXT COLLATE "C" NOT NULL CHECK (slot IN ('repo', 'admin')),
    url_redacted    TEXT COLLATE "C" NOT NULL,
    sealed          BYTEA NOT NULL,  -- AES-GCM under the master key in the data dir
    key_fingerprint TEXT COLLATE "C" NOT NULL,
    updated_at      TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (host_id, slot)
);

CREATE TABLE source_groups (
    id        TEXT COLLATE "C" PRIMARY KEY,
    host_id   TEXT COLLATE "C" NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
    name      TEXT COLLATE "C" NOT NULL,
    includes  TEXT COLLATE "C" NOT NULL,
    excludes  TEXT COLLATE "C" NOT NULL DEFAULT '[]',
    tag       TEXT COLLATE "C" NOT NULL,
    retention TEXT COLLATE "C" NOT NULL DEFAULT '{}',
    pre_hook  TEXT COLLATE "C",
    post_hook TEXT COLLATE "C",
    UNIQUE (host_id, name)
);

CREATE TABLE schedules (
    id         TEXT COLLATE "C" PRIMARY KEY,
    host_id    TEXT COLLATE "C" NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
    name       TEXT COLLATE "C" NOT NULL,
    cron       TEXT COLLATE "C",
    timezone   TEXT COLLATE "C" NOT NULL DEFAULT 'UTC',
    enabled    BIGINT NOT NULL DEFAULT 1,
    manual     BIGINT NOT NULL DEFAULT 0,
    created_at TEXT COLLATE "C" NOT NULL
);
CREATE INDEX schedules_host ON schedules(host_id);

CREATE TABLE schedule_groups (
    schedule_id     TEXT COLLATE "C" NOT NULL REFERENCES schedules(id) ON DELETE CASCADE,
    source_group_id TEXT COLLATE "C" NOT NULL REFERENCES source_groups(id) ON DELETE NO ACTION DEFERRABLE INITIALLY DEFERRED,  -- at commit: a host's delete cascades both ways
    position        BIGINT NOT NULL,
    PRIMARY KEY (schedule_id, source_group_id)
);
CREATE INDEX schedule_groups_group ON schedule_groups(source_group_id);

CREATE TABLE schedule_fires (
    fire_id      TEXT COLLATE "C" PRIMARY KEY,
    host_id      TEXT COLLATE "C" NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
    schedule_id  TEXT COLLATE "C" NOT NULL,
    scheduled_at TEXT COLLATE "C" NOT NULL,
    received_at  TEXT COLLATE "C" NOT NULL
);

CREATE TABLE jobs (
    id              TEXT COLLATE "C" PRIMARY KEY,
    host_id         TEXT COLLATE "C" NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
    kind            TEXT COLLATE "C" NOT NULL,
    state           TEXT COLLATE "C" NOT NULL,
    actor_kind      TEXT COLLATE "C" NOT NULL,
    actor_id        TEXT COLLATE "C",
    schedule_id     TEXT COLLATE "C",
    source_group_id TEXT COLLATE "C",
    params          TEXT COLLATE "C" NOT NULL DEFAULT '{}',
    created_at      TEXT COLLATE "C" NOT NULL,
    dispatched_at   TEXT COLLATE "C",
    started_at      TEXT COLLATE "C",
    finished_at     TEXT COLLATE "C",
    exit_code       BIGINT,
    summary         TEXT COLLATE "C",
    error           TEXT COLLATE "C",
    acked_seq       BIGINT NOT NULL DEFAULT 0,  -- highest event seq stored without a gap
    log_lines       BIGINT NOT NULL DEFAULT 0,  -- lines kept
    log_dropped     BIGINT NOT NULL DEFAULT 0   -- lines dropped by the retention cap
);
CREATE INDEX jobs_host_id ON jobs(host_id, id);
CREATE INDEX jobs_state ON jobs(state, id);
CREATE INDEX jobs_group ON jobs(source_group_id, kind, state);

CREATE TABLE job_logs (
    job_id TEXT COLLATE "C" NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    seq    BIGINT NOT NULL,
    ts     TEXT COLLATE "C" NOT NULL,
    stream TEXT COLLATE "C" NOT NULL,
    text   TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (job_id, seq)
);

CREATE TABLE snapshots (
    host_id  TEXT COLLATE "C" NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
    id       TEXT COLLATE "C" NOT NULL,
    short_id TEXT COLLATE "C",
    time     TEXT COLLATE "C" NOT NULL,
    hostname TEXT COLLATE "C",
    paths    TEXT COLLATE "C" NOT NULL DEFAULT '[]',
    tags     TEXT COLLATE "C" NOT NULL DEFAULT '[]',
    summary  TEXT COLLATE "C",
    PRIMARY KEY (host_id, id)
);

CREATE TABLE repo_stats (
    host_id    TEXT COLLATE "C" PRIMARY KEY REFERENCES hosts(id) ON DELETE CASCADE,
    stats      TEXT COLLATE "C" NOT NULL,
    updated_at TEXT COLLATE "C" NOT NULL
);

CREATE TABLE audit (
    id         BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    ts         TEXT COLLATE "C" NOT NULL,
    actor_kind TEXT COLLATE "C" NOT NULL,
    actor_id   TEXT COLLATE "C",
    actor_name TEXT COLLATE "C",
    action     TEXT COLLATE "C" NOT NULL,
    target     TEXT COLLATE "C",
    details    TEXT COLLATE "C" NOT NULL DEFAULT '{}'
);

CREATE TABLE settings (
    key   TEXT COLLATE "C" PRIMARY KEY,
    value TEXT COLLATE "C" NOT NULL
);

