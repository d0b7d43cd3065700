-- How far each PBX's CDR backfill has gone: before backfilled_to, pbxlink was listening, or
-- looked the calls of its gaps up in the CDR (or, before its first login, was not asked to).
-- A pbxlink killed before it looked up a gap's calls leaves the mark behind that gap, so
-- the next one looks there too.
-- backfilled_to: INTEGER microseconds since the Unix epoch (UTC).

CREATE TABLE cdr_backfill (
    pbx           TEXT    NOT NULL PRIMARY KEY,
    backfilled_to INTEGER NOT NULL
);
