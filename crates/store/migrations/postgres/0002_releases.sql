-- FreePBX module releases served by `pbxlink release-server` (PostgreSQL).
-- Timestamps are BIGINT microseconds since the Unix epoch (UTC), as in 0001.

CREATE TABLE releases (
    rawname       TEXT    NOT NULL,
    version       TEXT    NOT NULL,
    channel       TEXT    NOT NULL,  -- stable | beta
    name          TEXT    NOT NULL,
    publisher     TEXT,
    license       TEXT,
    changelog     TEXT,
    depends       TEXT,              -- JSON object from module.xml <depends>, or NULL
    size          BIGINT  NOT NULL,
    md5           TEXT    NOT NULL,
    sha1          TEXT    NOT NULL,
    sha256        TEXT    NOT NULL,  -- also the stored file's name
    location      TEXT,              -- external URL (CDN/S3); NULL: served by pbxlink
    published_at  BIGINT  NOT NULL,
    yanked_at     BIGINT,
    downloads     BIGINT  NOT NULL DEFAULT 0,
    update_checks BIGINT  NOT NULL DEFAULT 0,
    PRIMARY KEY (rawname, version)
);

CREATE TABLE release_audit (
    id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at      BIGINT  NOT NULL,
    action  TEXT    NOT NULL,  -- publish | yank
    rawname TEXT    NOT NULL,
    version TEXT    NOT NULL,
    actor   TEXT    NOT NULL,  -- `cli:<user>` or `api:<token name>`
    detail  TEXT    NOT NULL
);
