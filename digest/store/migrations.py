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
    Migration("0002_mail", (
        # Subscribers: one row per address (lower case), kept after they
        # unsubscribe so an import never subscribes them again.
        """CREATE TABLE subscribers (
            address TEXT PRIMARY KEY,
            name TEXT,
            status TEXT NOT NULL,
            source TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )""",
        "CREATE INDEX subscribers_status ON subscribers (status)",
        # The number of the last edition created: the compare-and-set target
        # that lets exactly one sender create the next edition.
        """CREATE TABLE edition_counter (
            id INTEGER PRIMARY KEY,
            last_edition INTEGER NOT NULL
        )""",
        "INSERT INTO edition_counter (id, last_edition) VALUES (1, 0)",
        """CREATE TABLE editions (
            id INTEGER PRIMARY KEY,
            uid TEXT NOT NULL,
            status TEXT NOT NULL,
            created_at TEXT NOT NULL,
            finished_at TEXT,
            article_count INTEGER NOT NULL,
            recipient_count INTEGER NOT NULL
        )""",
        "CREATE INDEX editions_status ON editions (status)",
        # What each article looked like when its edition was made: a resumed
        # edition renders the same for every recipient. The primary key puts
        # each article in at most one edition.
        """CREATE TABLE edition_articles (
            article_key TEXT PRIMARY KEY,
            edition_id INTEGER NOT NULL REFERENCES editions (id),
            position INTEGER NOT NULL,
            slug TEXT NOT NULL,
            title TEXT NOT NULL,
            summary TEXT NOT NULL,
            author TEXT NOT NULL,
            published TEXT NOT NULL
        )""",
        "CREATE INDEX edition_articles_edition ON edition_articles (edition_id)",
        # The outbox: one row per (edition, recipient), written before any
        # message leaves. status: pending -> sending (claimed by claimed_by
        # until claimed_until) -> sent | failed | skipped.
        """CREATE TABLE deliveries (
            edition_id INTEGER NOT NULL REFERENCES editions (id),
            recipient TEXT NOT NULL,
            message_id TEXT NOT NULL,
            status TEXT NOT NULL,
            attempts INTEGER NOT NULL,
            claimed_by TEXT,
            claimed_until TEXT,
            updated_at TEXT NOT NULL,
            reply TEXT,
            PRIMARY KEY (edition_id, recipient)
        )""",
        "CREATE INDEX deliveries_status ON deliveries (edition_id, status)",
    )),
    Migration("0003_schedule", (
        # The last run of each scheduled job, for `digest status` and the
        # catch-up at start. covered_until: fire times of the job up to this
        # moment were run to completion or deliberately skipped; a run that
        # was interrupted (stopped or killed) leaves it behind, so a restart
        # within MISFIRE_GRACE_TIME resumes it.
        """CREATE TABLE job_runs (
            job TEXT PRIMARY KEY,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            duration REAL,
            outcome TEXT NOT NULL,
            summary TEXT NOT NULL,
            covered_until TEXT
        )""",
    )),
    Migration("0004_lost_replies", (
        # How many times the reply to this delivery's end of data was lost (the
        # server may have stored the message). New statuses, no schema change:
        # unknown (a lost reply; tried once more, not before claimed_until and not
        # by the sender in claimed_by, the one that lost it) and unconfirmed
        # (lost twice: never sent again).
        "ALTER TABLE deliveries ADD COLUMN lost_replies INTEGER NOT NULL DEFAULT 0",
    )),
    Migration("0005_i11_article_media", (
        "ALTER TABLE articles ADD COLUMN image TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE articles ADD COLUMN enclosure TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE edition_articles ADD COLUMN image TEXT NOT NULL DEFAULT ''",
    )),
    Migration("0006_i13_bounces", (
        # Bounces per subscriber: how many were recorded (refusals, deferrals,
        # bounce messages), the last reply or report, and since when the
        # address has been deferred without a success in between (cleared by a
        # delivery the server accepts); BOUNCE_SOFT_DAYS of that makes it
        # bounced. The reply per delivery is deliveries.reply (0002).
        "ALTER TABLE subscribers ADD COLUMN bounces INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE subscribers ADD COLUMN last_bounce TEXT",
        "ALTER TABLE subscribers ADD COLUMN soft_bounce_since TEXT",
    )),
    Migration("0007_i13_topics", (
        # What each subscriber reads: topics (tag slugs, comma separated and sorted;
        # empty: everything) and cadence (every | weekly). served_edition: the last
        # edition whose articles the subscriber has been served or passed over
        # (NULL: none yet; see digest/store/audience.py). Existing subscribers
        # start at the last edition made, so nothing old is sent again.
        "ALTER TABLE subscribers ADD COLUMN topics TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE subscribers ADD COLUMN cadence TEXT NOT NULL DEFAULT 'every'",
        "ALTER TABLE subscribers ADD COLUMN served_edition INTEGER",
        "UPDATE subscribers SET served_edition = "
        "(SELECT last_edition FROM edition_counter WHERE id = 1)",
        # The tag slugs of each article when its edition was made (JSON list).
        "ALTER TABLE edition_articles ADD COLUMN tags TEXT NOT NULL DEFAULT '[]'",
        # The article keys one delivery carries (JSON list, in the order shown),
        # fixed when the row is made; NULL: exactly its edition's articles.
        "ALTER TABLE deliveries ADD COLUMN articles TEXT",
    )),
    Migration("0008_i12_nodes", (
        # The `digest run` processes sharing a PostgreSQL store: each registers
        # and heartbeats; one whose heartbeat is older than LEADER_LEASE is shown
        # as stale, and the leader deletes rows a day old. role: leader | follower.
        """CREATE TABLE nodes (
            node_id TEXT PRIMARY KEY,
            host TEXT NOT NULL,
            pid INTEGER NOT NULL,
            started_at TEXT NOT NULL,
            heartbeat TEXT NOT NULL,
            role TEXT NOT NULL
        )""",
        # One row per scheduled job and fire time, inserted before the job runs:
        # two leaders (a split-brain moment) can never both run one fire.
        """CREATE TABLE job_fires (
            job TEXT NOT NULL,
            fire_time TEXT NOT NULL,
            node_id TEXT NOT NULL,
            fired_at TEXT NOT NULL,
            PRIMARY KEY (job, fire_time)
        )""",
    )),
    Migration("0009_article_checks", (
        # What reading each article found, as JSON lists: the paths under ARTICLES_DIR
        # of the files its links name (a publish reads it again when one is gone) and
        # its warnings (a publish reads it again while it has any, to report them).
        "ALTER TABLE articles ADD COLUMN refs TEXT NOT NULL DEFAULT '[]'",
        "ALTER TABLE articles ADD COLUMN warnings TEXT NOT NULL DEFAULT '[]'",
    )),
)
