//! The call journal (calls, timelines, raw events) and the CRM outbox, on SQLite or PostgreSQL.
