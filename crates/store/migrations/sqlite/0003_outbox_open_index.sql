-- Claims look for due rows among the open ones, oldest first. Without this index both planners
-- walk the primary key through every delivered row ever kept (100k delivered rows: 14 ms per
-- claim on PostgreSQL, a full scan on SQLite); with it, the cost follows the open rows only.
CREATE INDEX outbox_open ON outbox (id) WHERE status IN ('pending', 'in_flight');
