"""The state store on SQLite and PostgreSQL: migrations and article records."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

import digest.store.database
from digest.errors import ConfigError, StoreError
from digest.store.database import Store, StoredArticle, resolve_url
from digest.store.migrations import MIGRATIONS
from tests.conftest import wait_for

T = datetime(2024, 3, 20, 8, 30, tzinfo=UTC)


def record(key: str, **changes: object) -> StoredArticle:
    values: dict[str, object] = dict(
        key=key, entry_id=f"urn:x:{key}", slug=key, size=10, mtime_ns=2**62, content_hash="h",
        first_seen=T, last_changed=T, published=T, updated=T, title="Tïtle ✓", author="",
        tags=("a", "b c"), summary="S", status="published")
    values.update(changes)
    return StoredArticle(**values)  # type: ignore[arg-type]


def test_migrations_apply_once_in_order(store: Store) -> None:
    assert store.applied_migrations() == [m.name for m in MIGRATIONS]
    assert store.migrate() == []


def test_articles_round_trip(store: Store) -> None:
    store.save_articles([record("a"), record("b", status="draft")], [], {"k": "v"})
    loaded = store.load_articles()
    assert loaded["a"] == record("a")
    assert loaded["b"].status == "draft"
    assert store.get_meta("k") == "v"
    store.save_articles([record("a", title="New")], ["b"])
    loaded = store.load_articles()
    assert set(loaded) == {"a"} and loaded["a"].title == "New"


def test_a_failed_save_changes_nothing(store: Store) -> None:
    store.save_articles([record("a")], [])
    with pytest.raises(StoreError):
        store.save_articles([record("b"), record("b")], [])  # duplicate key: rolled back
    assert set(store.load_articles()) == {"a"}


def test_refuses_a_schema_from_a_newer_version(store: Store) -> None:
    with store.engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO schema_migrations (name, applied_at) "
                             "VALUES ('9999_future', 'x')"))
    with pytest.raises(StoreError, match="9999_future"):
        store.migrate()


def test_relative_sqlite_path_is_resolved_against_the_project(tmp_path: Path) -> None:
    assert resolve_url("sqlite:///state.sqlite3", tmp_path) == \
        f"sqlite:///{tmp_path / 'state.sqlite3'}"


def test_bad_url_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="DATABASE_URL='nonsense' is not a valid database URL"):
        Store.open("nonsense", tmp_path)


def test_exclusive_lock_serializes_holders(store: Store, tmp_path: Path) -> None:
    import threading

    other = Store.open(store.engine.url.render_as_string(hide_password=False), tmp_path)
    order: list[str] = []
    try:
        with store.exclusive("publish"):
            thread = threading.Thread(target=lambda: _hold(other, order))
            thread.start()
            if store.dialect == "postgresql":
                wait_for(lambda: _advisory_waiters(store) > 0, "the second holder to wait")
            else:
                wait_for(lambda: order == ["second"], "the second holder")
            order.append("first done")
        thread.join(10)
    finally:
        other.close()
    if store.dialect == "postgresql":
        assert order == ["first done", "second"]
    else:
        assert order == ["second", "first done"]  # SQLite: local, the output lock serializes


def _advisory_waiters(store: Store) -> int:
    with store.engine.connect() as conn:
        return int(conn.exec_driver_sql(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted").scalar_one())


def _hold(store: Store, order: list[str]) -> None:
    with store.exclusive("publish"):
        order.append("second")


_OLD_ARTICLE = ("INSERT INTO articles VALUES ('a.md', 'urn:x', 'a', 1, 2, 'h', "
                "'2024-01-01T00:00:00+00:00', '2024-01-01T00:00:00+00:00', "
                "'2024-01-01T00:00:00+00:00', '2024-01-01T00:00:00+00:00', 'T', '', '[]', "
                "'S', 'published'")


def _article_before(migration: str, database_url: str, tmp_path: Path,
                    monkeypatch: pytest.MonkeyPatch, more_values: str = "") -> None:
    """A store migrated up to (not including) `migration`, holding article a.md (its row
    as that schema has it: the columns of 0001, then `more_values`)."""
    before = tuple(m for m in MIGRATIONS if m.name < migration)
    with monkeypatch.context() as patch:
        patch.setattr(digest.store.database, "MIGRATIONS", before)
        old = Store.open(database_url, tmp_path)
        try:
            with old.transaction() as conn:
                conn.exec_driver_sql(f"{_OLD_ARTICLE}{more_values})")
        finally:
            old.close()


def test_media_migration_keeps_existing_articles_and_stores_image_and_enclosure(
        tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _article_before("0005_i11_article_media", database_url, tmp_path, monkeypatch)
    upgraded = Store.open(database_url, tmp_path)
    try:
        loaded = upgraded.load_articles()["a.md"]
        assert (loaded.title, loaded.image, loaded.enclosure) == ("T", "", "")
        upgraded.save_articles([record("b", image="articles/b.png", enclosure="articles/b.mp3")],
                               [])
        again = upgraded.load_articles()["b"]
        assert (again.image, again.enclosure) == ("articles/b.png", "articles/b.mp3")
    finally:
        upgraded.close()


def test_checks_migration_keeps_existing_articles_and_stores_references_and_warnings(
        tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _article_before("0009_article_checks", database_url, tmp_path, monkeypatch,
                    ", 'articles/a.png', ''")
    upgraded = Store.open(database_url, tmp_path)
    try:
        loaded = upgraded.load_articles()["a.md"]
        assert (loaded.image, loaded.references, loaded.warnings) == ("articles/a.png", (), ())
        warning = "<img src> 'ü.png' names a missing file (ü.png); it is not published"
        upgraded.save_articles([record("b", references=("img/b.png", "b.mp3"),
                                       warnings=(warning,))], [])
        again = upgraded.load_articles()["b"]
        assert (again.references, again.warnings) == (("img/b.png", "b.mp3"), (warning,))
    finally:
        upgraded.close()
