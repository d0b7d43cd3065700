-- API tokens of `pbxlink token create|list|revoke` (PostgreSQL). Only a SHA-256 of each token is
-- kept, so the database never holds a usable secret. Timestamps: BIGINT microseconds (UTC).

CREATE TABLE api_tokens (
    id         TEXT    NOT NULL PRIMARY KEY,
    name       TEXT    NOT NULL,
    scope      TEXT    NOT NULL,  -- read | control | admin
    sha256     TEXT    NOT NULL UNIQUE,
    created_at BIGINT  NOT NULL,
    revoked_at BIGINT
);
