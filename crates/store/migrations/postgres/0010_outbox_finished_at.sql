-- When an outbox row was delivered or went dead (microseconds, UTC; NULL while it is open, and
-- for rows finished before this column existed). `pbxlink outbox purge --delivered-before`
-- keys on it: the time a row was queued says nothing about how long ago it was delivered.
ALTER TABLE outbox ADD COLUMN finished_at BIGINT;
