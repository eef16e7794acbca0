-- Room on each page of `hosts` for updates in place: PostgreSQL only (its twin in
-- postgresql/ says why). SQLite has no such setting; the number is kept so both backends
-- stay numbered together.
BEGIN;
PRAGMA user_version = 9;
COMMIT;
