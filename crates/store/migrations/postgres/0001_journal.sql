-- Call journal, raw AMI event log and CRM outbox (PostgreSQL).
-- Timestamps are BIGINT microseconds since the Unix epoch (UTC) and JSON is TEXT, because the
-- store talks to both backends through sqlx's Any driver, which only carries integers and text.

CREATE TABLE calls (
    pbx          TEXT    NOT NULL,
    id           TEXT    NOT NULL,  -- the call's Linkedid
    direction    TEXT    NOT NULL,  -- inbound | outbound | internal
    from_number  TEXT,
    to_number    TEXT,
    caller_name  TEXT,
    started_at   BIGINT  NOT NULL,
    answered_at  BIGINT,
    ended_at     BIGINT  NOT NULL,
    ring_seconds BIGINT  NOT NULL,
    talk_seconds BIGINT  NOT NULL,
    disposition  TEXT    NOT NULL,  -- answered | no_answer | busy | failed | cancelled
    answered_by  TEXT,
    rang         TEXT    NOT NULL,  -- JSON array of extensions
    transfers    TEXT    NOT NULL,  -- JSON array of transfers
    queue        TEXT,
    recording    TEXT,
    legs         TEXT    NOT NULL,  -- JSON array of channel names
    PRIMARY KEY (pbx, id)
);
CREATE INDEX calls_started_at ON calls (started_at);
CREATE INDEX calls_from_number ON calls (from_number);
CREATE INDEX calls_to_number ON calls (to_number);
CREATE INDEX calls_answered_by ON calls (answered_by);
CREATE INDEX calls_disposition ON calls (disposition, started_at);

CREATE TABLE call_timeline (
    pbx     TEXT    NOT NULL,
    call_id TEXT    NOT NULL,
    seq     BIGINT  NOT NULL,
    at      BIGINT  NOT NULL,
    what    TEXT    NOT NULL,
    detail  TEXT    NOT NULL,
    PRIMARY KEY (pbx, call_id, seq)
);

CREATE TABLE ami_events (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    pbx         TEXT    NOT NULL,
    seq         BIGINT  NOT NULL,  -- order of arrival within the AMI session
    received_at BIGINT  NOT NULL,
    event       TEXT    NOT NULL,
    linkedid    TEXT,
    message     TEXT    NOT NULL   -- the whole AMI message as a JSON object
);
CREATE INDEX ami_events_received_at ON ami_events (received_at);
CREATE INDEX ami_events_linkedid ON ami_events (pbx, linkedid);

CREATE TABLE outbox (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    connector       TEXT    NOT NULL,
    pbx             TEXT    NOT NULL,
    call_id         TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    payload         TEXT    NOT NULL,  -- JSON
    idempotency_key TEXT    NOT NULL UNIQUE,
    status          TEXT    NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'in_flight', 'delivered', 'dead')),
    attempts        BIGINT  NOT NULL DEFAULT 0,
    next_attempt_at BIGINT  NOT NULL,
    lease_owner     TEXT,
    lease_until     BIGINT,
    last_error      TEXT,
    created_at      BIGINT  NOT NULL
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
CREATE INDEX outbox_call ON outbox (pbx, call_id);
