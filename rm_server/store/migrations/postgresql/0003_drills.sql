-- Restore drills: a policy per source group (cron, sample size, how old a last good drill
-- may get), when the ticker last fired it, and whether the group is overdue (so the webhook
-- is sent once per change, like a stale host). The newest drill of a host is read from jobs.

CREATE TABLE drill_policies (
    source_group_id TEXT COLLATE "C" PRIMARY KEY REFERENCES source_groups(id) ON DELETE CASCADE,
    host_id         TEXT COLLATE "C" NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
    policy          TEXT COLLATE "C" NOT NULL,
    updated_at      TEXT COLLATE "C" NOT NULL,
    last_fire       TEXT COLLATE "C",
    overdue         BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX drill_policies_host ON drill_policies(host_id);
CREATE INDEX jobs_host_kind_finished ON jobs(host_id, kind, finished_at);

