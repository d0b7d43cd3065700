-- A web UI user's own extension (`pbxlink user add --extension`), so the live stream can be
-- asked for one user's calls (`/api/v1/events?user=NAME`). NULL: the user has no phone here.
ALTER TABLE users ADD COLUMN extension TEXT;
