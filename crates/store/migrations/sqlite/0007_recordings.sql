-- Call recordings (sqlite): one row per journaled call that has a MixMonitor file, from the moment
-- the recordings worker finds the call until retention deletes it. The MP3 is stored by content
-- hash (sha256), so the row names the file and serving needs no path from the request.
-- Timestamps: INTEGER microseconds (UTC).

CREATE TABLE recordings (
    pbx           TEXT    NOT NULL,
    call_id       TEXT    NOT NULL,
    source        TEXT    NOT NULL,  -- the file as the PBX named it (MIXMONITOR_FILENAME)
    state         TEXT    NOT NULL DEFAULT 'pending'
                  CHECK (state IN ('pending', 'ready', 'empty', 'missing', 'failed')),
    sha256        TEXT,              -- hex digest of the MP3 (its file name), when ready
    bytes         INTEGER,                -- MP3 size, when ready
    duration_ms   INTEGER,                -- audio length, when ready
    source_bytes  INTEGER,                -- the WAV's size at the last look (stable = complete)
    next_check_at INTEGER NOT NULL,
    error         TEXT,              -- why it is missing or failed
    created_at    INTEGER NOT NULL,
    finished_at   INTEGER,
    PRIMARY KEY (pbx, call_id)
);
CREATE INDEX recordings_due ON recordings (state, next_check_at);
CREATE INDEX recordings_created_at ON recordings (created_at);
CREATE INDEX recordings_sha256 ON recordings (sha256);
