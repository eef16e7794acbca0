-- (PostgreSQL twin of ../0007_replicas.sql.) Replicas (several rm-server processes on one PostgreSQL database; with SQLite the one
-- process is the only replica): which replica holds each host's agent socket, the replicas
-- alive (each holds an advisory lock of its own, store/cluster.py), a cancel that must reach
-- the agent wherever it reconnects, one maintenance job per host, kind and tick whichever
-- replica ticked, and messages between replicas too big for a notification (live query
-- answers, large events): the notification carries the row's id.

ALTER TABLE hosts ADD COLUMN replica_id TEXT COLLATE "C";
ALTER TABLE jobs ADD COLUMN cancel_requested BIGINT NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN tick TEXT COLLATE "C";
CREATE UNIQUE INDEX jobs_one_per_tick ON jobs(host_id, kind, tick) WHERE tick IS NOT NULL;

CREATE TABLE replicas (
    id         TEXT COLLATE "C" PRIMARY KEY,
    lock_no    BIGINT NOT NULL,
    started_at TEXT COLLATE "C" NOT NULL
);

CREATE TABLE relay_bodies (
    id         TEXT COLLATE "C" PRIMARY KEY,
    body       TEXT COLLATE "C" NOT NULL,
    created_at TEXT COLLATE "C" NOT NULL
);

