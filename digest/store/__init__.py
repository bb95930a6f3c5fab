"""The state store: one schema, one boundary to SQLite or PostgreSQL."""
