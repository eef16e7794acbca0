-- (PostgreSQL twin of ../0004_notification_channels.sql.) Notification channels: an Apprise URL per channel, sealed with the master
-- key like repository credentials (the URL holds the service's token), the events it follows
-- and how its last sends went. host_alerts remembers which hosts an alert was raised for
-- (host.offline), so it is sent once per episode and not again after a restart.

CREATE TABLE notification_channels (
    id             TEXT COLLATE "C" PRIMARY KEY,
    name           TEXT COLLATE "C" NOT NULL UNIQUE,
    url_sealed     BYTEA NOT NULL,
    url_redacted   TEXT COLLATE "C" NOT NULL,
    events         TEXT COLLATE "C" NOT NULL,
    min_interval_s BIGINT NOT NULL,
    created_at     TEXT COLLATE "C" NOT NULL,
    updated_at     TEXT COLLATE "C" NOT NULL,
    last_sent_at   TEXT COLLATE "C",
    last_error     TEXT COLLATE "C",
    last_error_at  TEXT COLLATE "C",
    failures       BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE host_alerts (
    host_id   TEXT COLLATE "C" NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
    event     TEXT COLLATE "C" NOT NULL,
    raised_at TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (host_id, event)
);

