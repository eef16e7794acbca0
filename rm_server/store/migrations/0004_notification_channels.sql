-- Notification channels (DESIGN.md §11): an Apprise URL per channel, sealed with the master
-- key like repository credentials (the URL holds the service's token), the events it follows
-- and how its last sends went. host_alerts remembers which hosts an alert was raised for
-- (host.offline), so it is sent once per episode and not again after a restart.
BEGIN;

CREATE TABLE notification_channels (
    id             TEXT PRIMARY KEY,
    name           TEXT NOT NULL UNIQUE,
    url_sealed     BLOB NOT NULL,
    url_redacted   TEXT NOT NULL,
    events         TEXT NOT NULL,
    min_interval_s INTEGER NOT NULL,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    last_sent_at   TEXT,
    last_error     TEXT,
    last_error_at  TEXT,
    failures       INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE host_alerts (
    host_id   TEXT NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
    event     TEXT NOT NULL,
    raised_at TEXT NOT NULL,
    PRIMARY KEY (host_id, event)
);

PRAGMA user_version = 4;
COMMIT;
