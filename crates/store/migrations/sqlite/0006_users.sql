-- Web UI users of `pbxlink user add|list|remove` and their sign-in sessions (SQLite).
-- Passwords are kept as argon2id PHC strings, sessions by the SHA-256 of their token, so the
-- database holds nothing that signs anyone in. Timestamps: INTEGER microseconds (UTC).

CREATE TABLE users (
    name          TEXT    NOT NULL PRIMARY KEY,
    scope         TEXT    NOT NULL,  -- read | control | admin
    password_hash TEXT    NOT NULL,  -- $argon2id$v=19$...
    created_at    INTEGER NOT NULL
);

-- A session lives until it expires or its user signs out or is removed; its scope is the
-- user's current one (joined at each request), so a changed or removed user loses it at once.
CREATE TABLE user_sessions (
    sha256     TEXT    NOT NULL PRIMARY KEY,
    user_name  TEXT    NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX user_sessions_expiry ON user_sessions (expires_at);
