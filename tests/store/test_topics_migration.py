"""Migration 0007_i13_topics: existing subscribers read everything, every digest, and start
after the last edition made (nothing old is sent again)."""

from __future__ import annotations

from pathlib import Path

import pytest

import digest.store.database
from digest.mail.subscribers import get_subscriber
from digest.model import Cadence
from digest.store.database import Store
from digest.store.migrations import MIGRATIONS
from digest.store.schema import subscribers


def test_existing_subscribers_start_after_the_last_edition(
        tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    before = tuple(m for m in MIGRATIONS if m.name != "0007_i13_topics")
    with monkeypatch.context() as patch:
        patch.setattr(digest.store.database, "MIGRATIONS", before)
        old = Store.open(database_url, tmp_path)
        try:
            with old.transaction() as conn:
                conn.exec_driver_sql("UPDATE edition_counter SET last_edition = 3")
                conn.exec_driver_sql(
                    "INSERT INTO subscribers (address, name, status, source, created_at, "
                    "updated_at) VALUES ('ann@example.org', NULL, 'subscribed', 'cli', "
                    "'2024-01-01T00:00:00+00:00', '2024-01-01T00:00:00+00:00')")
        finally:
            old.close()
    upgraded = Store.open(database_url, tmp_path)
    try:
        ann = get_subscriber(upgraded, "ann@example.org")
        assert ann is not None and (ann.topics, ann.cadence) == ((), Cadence.EVERY)
        with upgraded.reading() as conn:
            assert conn.execute(subscribers.select()).one().served_edition == 3
    finally:
        upgraded.close()
