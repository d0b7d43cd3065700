-- Release-server customers, their module licenses, downloads per customer, and release
-- signatures (PostgreSQL). Only a SHA-256 of each customer token is kept, as for API
-- tokens. Timestamps: BIGINT microseconds since the Unix epoch (UTC).

CREATE TABLE customers (
    name       TEXT    NOT NULL PRIMARY KEY,
    sha256     TEXT    NOT NULL UNIQUE,  -- of the token
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

-- A module with at least one row here (revoked or expired ones too) is licensed: only its
-- license holders get it, through their /c/{token}/ URLs.
CREATE TABLE licenses (
    customer    TEXT    NOT NULL REFERENCES customers (name),
    rawname     TEXT    NOT NULL,
    channel     TEXT    NOT NULL,  -- stable | beta
    valid_until BIGINT,            -- NULL: no end
    seats       BIGINT NOT NULL,
    granted_at  BIGINT NOT NULL,
    revoked_at  BIGINT,
    PRIMARY KEY (customer, rawname)
);

CREATE TABLE customer_downloads (
    customer  TEXT    NOT NULL,
    rawname   TEXT    NOT NULL,
    version   TEXT    NOT NULL,
    downloads BIGINT NOT NULL,
    PRIMARY KEY (customer, rawname, version)
);

-- The minisign signature file (text) of the tarball, when one was published with it.
ALTER TABLE releases ADD COLUMN minisig TEXT;
-- The customer a customer or license line is about.
ALTER TABLE release_audit ADD COLUMN customer TEXT;
