"""Named, ordered schema migrations of the state store.

Each migration is a name and a list of SQL statements that run unchanged on
SQLite and PostgreSQL. Applied names are recorded in ``schema_migrations``;
a store never runs a migration twice and refuses a schema newer than the code.
Append new migrations at the end; never edit or reorder applied ones.

Times are stored as ISO 8601 text with an offset (sortable when in UTC).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    name: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration("0001_articles", (
        """CREATE TABLE meta (
            name TEXT PRIMARY KEY,
            value TEXT NOT NULL
        )""",
        """CREATE TABLE articles (
            key TEXT PRIMARY KEY,
            entry_id TEXT NOT NULL,
            slug TEXT NOT NULL,
            size BIGINT NOT NULL,
            mtime_ns BIGINT NOT NULL,
            content_hash TEXT NOT NULL,
            first_seen TEXT NOT NULL,
            last_changed TEXT NOT NULL,
            published TEXT NOT NULL,
            updated TEXT NOT NULL,
            title TEXT NOT NULL,
            author TEXT NOT NULL,
            tags TEXT NOT NULL,
            summary TEXT NOT NULL,
            status TEXT NOT NULL
        )""",
        "CREATE INDEX articles_published ON articles (published)",
    )),
)
