"""SQLAlchemy Core declarations of every table of the state store, in one MetaData.

The SQL that creates them lives in :mod:`digest.store.migrations` (the one
history of the schema); these declarations must match it. Nothing calls
``metadata.create_all``: only ``schema_migrations`` is created here, by
:meth:`digest.store.database.Store.migrate`, before the first migration runs.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

# -- the store itself (Store.migrate) ------------------------------------------------

schema_migrations = sa.Table(
    "schema_migrations", metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("applied_at", sa.Text, nullable=False),
)

# -- 0001_articles --------------------------------------------------------------------

meta = sa.Table(
    "meta", metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

articles = sa.Table(
    "articles", metadata,
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("entry_id", sa.Text, nullable=False),
    sa.Column("slug", sa.Text, nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("mtime_ns", sa.BigInteger, nullable=False),
    sa.Column("content_hash", sa.Text, nullable=False),
    sa.Column("first_seen", sa.Text, nullable=False),
    sa.Column("last_changed", sa.Text, nullable=False),
    sa.Column("published", sa.Text, nullable=False),
    sa.Column("updated", sa.Text, nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("author", sa.Text, nullable=False),
    sa.Column("tags", sa.Text, nullable=False),
    sa.Column("summary", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),  # ArticleStatus
    sa.Column("image", sa.Text, nullable=False, server_default=""),  # 0005
    sa.Column("enclosure", sa.Text, nullable=False, server_default=""),  # 0005
    sa.Column("refs", sa.Text, nullable=False, server_default="[]"),  # 0009
    sa.Column("warnings", sa.Text, nullable=False, server_default="[]"),  # 0009
)

# -- 0002_mail ------------------------------------------------------------------------

subscribers = sa.Table(
    "subscribers", metadata,
    sa.Column("address", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=True),
    sa.Column("status", sa.Text, nullable=False),  # SubscriberStatus
    sa.Column("source", sa.Text, nullable=False),  # cli | import | settings | web | unsubscribe
    sa.Column("created_at", sa.Text, nullable=False),
    sa.Column("updated_at", sa.Text, nullable=False),
    sa.Column("bounces", sa.Integer, nullable=False, server_default="0"),  # 0005
    sa.Column("last_bounce", sa.Text, nullable=True),  # 0005
    sa.Column("soft_bounce_since", sa.Text, nullable=True),  # 0005
    sa.Column("topics", sa.Text, nullable=False, server_default=""),  # 0007
    sa.Column("cadence", sa.Text, nullable=False, server_default="every"),  # 0007: Cadence
    sa.Column("served_edition", sa.Integer, nullable=True),  # 0007
)

edition_counter = sa.Table(
    "edition_counter", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("last_edition", sa.Integer, nullable=False),
)

editions = sa.Table(
    "editions", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("uid", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),  # EditionStatus: sending | done
    sa.Column("created_at", sa.Text, nullable=False),
    sa.Column("finished_at", sa.Text, nullable=True),
    sa.Column("article_count", sa.Integer, nullable=False),
    sa.Column("recipient_count", sa.Integer, nullable=False),
)

edition_articles = sa.Table(
    "edition_articles", metadata,
    sa.Column("article_key", sa.Text, primary_key=True),
    sa.Column("edition_id", sa.Integer, nullable=False),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("slug", sa.Text, nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("summary", sa.Text, nullable=False),
    sa.Column("author", sa.Text, nullable=False),
    sa.Column("published", sa.Text, nullable=False),
    sa.Column("image", sa.Text, nullable=False, server_default=""),  # 0005
    sa.Column("tags", sa.Text, nullable=False, server_default="[]"),  # 0007: JSON slugs
)

deliveries = sa.Table(
    "deliveries", metadata,
    sa.Column("edition_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("recipient", sa.Text, primary_key=True),
    sa.Column("message_id", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),  # DeliveryStatus
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("claimed_by", sa.Text, nullable=True),
    sa.Column("claimed_until", sa.Text, nullable=True),
    sa.Column("updated_at", sa.Text, nullable=False),
    sa.Column("reply", sa.Text, nullable=True),
    sa.Column("lost_replies", sa.Integer, nullable=False, server_default="0"),  # 0004
    sa.Column("articles", sa.Text, nullable=True),  # 0007: JSON keys; NULL: the edition's
)

# -- 0003_schedule --------------------------------------------------------------------

job_runs = sa.Table(
    "job_runs", metadata,
    sa.Column("job", sa.Text, primary_key=True),
    sa.Column("started_at", sa.Text, nullable=False),
    sa.Column("finished_at", sa.Text),
    sa.Column("duration", sa.Float),
    sa.Column("outcome", sa.Text, nullable=False),  # RunOutcome
    sa.Column("summary", sa.Text, nullable=False),
    sa.Column("covered_until", sa.Text),
)

# -- 0008_i12_nodes -------------------------------------------------------------------

nodes = sa.Table(
    "nodes", metadata,
    sa.Column("node_id", sa.Text, primary_key=True),
    sa.Column("host", sa.Text, nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("started_at", sa.Text, nullable=False),
    sa.Column("heartbeat", sa.Text, nullable=False),
    sa.Column("role", sa.Text, nullable=False),  # leader | follower
)

job_fires = sa.Table(
    "job_fires", metadata,
    sa.Column("job", sa.Text, primary_key=True),
    sa.Column("fire_time", sa.Text, primary_key=True),
    sa.Column("node_id", sa.Text, nullable=False),
    sa.Column("fired_at", sa.Text, nullable=False),
)

# -- APScheduler's job store (created and written by APScheduler; only read here) -----

JOB_TABLE = "apscheduler_jobs"

scheduler_jobs = sa.Table(
    JOB_TABLE, metadata,
    sa.Column("id", sa.Unicode(191), primary_key=True),
    sa.Column("next_run_time", sa.Float(25)),
)
