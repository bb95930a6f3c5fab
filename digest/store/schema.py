"""SQLAlchemy Core declarations of the mail tables (created by migration 0002_mail).

Kept apart from :mod:`digest.store` so the mail code can evolve its tables
without touching the publisher's. The SQL that creates them lives in
:mod:`digest.migrations`; these declarations must match it.
"""

from __future__ import annotations

import sqlalchemy as sa

mail_metadata = sa.MetaData()

subscribers = sa.Table(
    "subscribers", mail_metadata,
    sa.Column("address", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=True),
    sa.Column("status", sa.Text, nullable=False),  # subscribed | unsubscribed | pending
    sa.Column("source", sa.Text, nullable=False),  # cli | import | settings | web
    sa.Column("created_at", sa.Text, nullable=False),
    sa.Column("updated_at", sa.Text, nullable=False),
)

edition_counter = sa.Table(
    "edition_counter", mail_metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("last_edition", sa.Integer, nullable=False),
)

editions = sa.Table(
    "editions", mail_metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("uid", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),  # sending | done
    sa.Column("created_at", sa.Text, nullable=False),
    sa.Column("finished_at", sa.Text, nullable=True),
    sa.Column("article_count", sa.Integer, nullable=False),
    sa.Column("recipient_count", sa.Integer, nullable=False),
)

edition_articles = sa.Table(
    "edition_articles", mail_metadata,
    sa.Column("article_key", sa.Text, primary_key=True),
    sa.Column("edition_id", sa.Integer, nullable=False),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("slug", sa.Text, nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("summary", sa.Text, nullable=False),
    sa.Column("author", sa.Text, nullable=False),
    sa.Column("published", sa.Text, nullable=False),
)

deliveries = sa.Table(
    "deliveries", mail_metadata,
    sa.Column("edition_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("recipient", sa.Text, primary_key=True),
    sa.Column("message_id", sa.Text, nullable=False),
    # pending | sending | sent | failed | skipped | unknown | unconfirmed
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("claimed_by", sa.Text, nullable=True),
    sa.Column("claimed_until", sa.Text, nullable=True),
    sa.Column("updated_at", sa.Text, nullable=False),
    sa.Column("reply", sa.Text, nullable=True),
    sa.Column("lost_replies", sa.Integer, nullable=False, server_default="0"),  # 0004
)
