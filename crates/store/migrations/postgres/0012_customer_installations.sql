-- Where each customer's licensed modules are checked for updates from. FreePBX sends nothing
-- that tells installations apart, so the address is the nearest thing to one (NAT merges
-- installations, a changing address splits one): shown against a license's seats, not
-- enforced. Timestamps: microseconds since the Unix epoch (UTC).
CREATE TABLE customer_installations (
    customer   TEXT    NOT NULL,
    rawname    TEXT    NOT NULL,
    address    TEXT    NOT NULL,
    first_seen BIGINT NOT NULL,
    last_seen  BIGINT NOT NULL,
    PRIMARY KEY (customer, rawname, address)
);
