-- Scale-out: which pbxlink instance tracks each PBX. An instance renews its lease well
-- before expires_at; once a lease has expired, another instance may take the PBX over.
-- expires_at: INTEGER microseconds since the Unix epoch (UTC), from the instances' clocks.

CREATE TABLE pbx_leases (
    pbx        TEXT    NOT NULL PRIMARY KEY,
    owner      TEXT    NOT NULL,  -- [cluster] instance_id
    expires_at INTEGER NOT NULL,
    since      INTEGER NOT NULL   -- when this owner took it (a takeover resets it)
);
