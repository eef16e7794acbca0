-- Bytes of log text kept per job, so a job's log can be capped in bytes as well as in
-- lines (lines of up to 8 KiB times 11 000 lines was still 88 MiB a job).

ALTER TABLE jobs ADD COLUMN log_bytes BIGINT NOT NULL DEFAULT 0;

