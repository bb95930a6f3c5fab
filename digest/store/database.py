"""The state store: SQLite by default, PostgreSQL through DATABASE_URL.

It remembers what the publisher saw (one row per article file, with its
content hash and when it first appeared and last changed) and, through the
tables later migrations add, the digest editions and deliveries. All access
goes through SQLAlchemy Core so one code path serves both databases.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from digest.errors import ConfigError, StoreError
from digest.model import StoredArticle
from digest.settings import shown_database_url
from digest.store.migrations import MIGRATIONS
from digest.store.schema import articles, meta, schema_migrations
from digest.store.timestamps import from_iso, iso, utcnow

__all__ = ["DriverError", "Store", "StoredArticle", "from_iso", "iso", "resolve_url",
           "store_error"]

# Driver errors, for code that hands the engine to a library (APScheduler's job
# store) and must recognise what that library lets through.
DriverError = SQLAlchemyError

_HINT = "check DATABASE_URL, that the database is reachable and not full"


def store_error(exc: Exception) -> StoreError:
    """A driver error (SQLAlchemy's or the DB-API driver's) as a StoreError; raise it `from exc`."""
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
    return StoreError(f"state store error: {reason}", _HINT)


def resolve_url(database_url: str, base_dir: Path) -> str:
    """Make a relative SQLite file path absolute against base_dir."""
    try:
        url = make_url(database_url)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise ConfigError(f"DATABASE_URL={shown_database_url(database_url)!r} is not a valid "
                          "database URL (check the host and the port, a number)",
                          "set DATABASE_URL=sqlite:///digest.sqlite3 or "
                          "DATABASE_URL=postgresql://user:password@host:5432/dbname "
                          "(percent-encode special characters in the password)") from None
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        path = Path(url.database)
        if not path.is_absolute():
            url = url.set(database=str(base_dir / path))
    if url.get_backend_name() == "postgresql" and url.get_driver_name() in ("", "psycopg2"):
        url = url.set(drivername="postgresql+psycopg")
    return url.render_as_string(hide_password=False)


class Store:
    """A connection pool to the state store, migrated to the current schema."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # SQLite takes one writer at a time: this process's threads (the SMTP
        # workers, the writer of "sent" records) queue here rather than in
        # SQLite's busy handler. PostgreSQL needs no such lock.
        self._write_lock = threading.RLock() if engine.dialect.name == "sqlite" else None

    @classmethod
    def open(cls, database_url: str, base_dir: Path) -> Store:
        url = resolve_url(database_url, base_dir)
        shown = make_url(url).render_as_string(hide_password=True)
        try:
            if url.startswith("sqlite"):
                engine = sa.create_engine(url, connect_args={"timeout": 30})
                sa.event.listen(engine, "connect", _sqlite_pragmas)
            else:
                engine = sa.create_engine(url, pool_pre_ping=True)
            store = cls(engine)
            store.migrate()
        except NoSuchModuleError:
            raise StoreError(f"DATABASE_URL {shown}: unsupported database",
                             "use a sqlite:/// or postgresql:// URL") from None
        except SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            raise StoreError(f"cannot open the state store {shown}: {reason}",
                             "check DATABASE_URL, that the database server runs and that "
                             "the folder of a SQLite file is writable") from exc
        return store

    def close(self) -> None:
        self.engine.dispose()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Hold this process's SQLite write lock (one writing thread at a time); a no-op on
        PostgreSQL."""
        if self._write_lock is None:
            yield
            return
        with self._write_lock:
            yield

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One transaction; commits on success, rolls back on any error."""
        try:
            with self.writing(), self.engine.begin() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise store_error(exc) from exc

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A connection for reads (no transaction kept open); driver errors become StoreError."""
        try:
            with self.engine.connect() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise store_error(exc) from exc

    @contextmanager
    def exclusive(self, name: str) -> Iterator[None]:
        """Hold a lock named `name` across every process that shares this store.

        PostgreSQL: a session advisory lock on a dedicated connection (released
        by the server if the process dies). SQLite: nothing to do here, since a
        SQLite store is local and the output folder has its own file lock.
        """
        if self.dialect != "postgresql":
            yield
            return
        key = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big",
                             signed=True)
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": key})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                conn.commit()

    # -- schema ----------------------------------------------------------------

    def migrate(self) -> list[str]:
        """Apply pending migrations in order; return the names applied."""
        applied_now: list[str] = []
        known = {m.name for m in MIGRATIONS}
        with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                # Serialize concurrent migrators (several nodes starting at once).
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7351009)")
            schema_migrations.create(conn, checkfirst=True)
            done = {row[0] for row in conn.execute(sa.select(schema_migrations.c.name))}
            unknown = sorted(done - known)
            if unknown:
                raise StoreError(
                    f"the state store has schema migrations this version does not know: "
                    f"{', '.join(unknown)}", "upgrade digest to the version that wrote it")
            for migration in MIGRATIONS:
                if migration.name in done:
                    continue
                for statement in migration.statements:
                    conn.exec_driver_sql(statement)
                conn.execute(schema_migrations.insert().values(
                    name=migration.name, applied_at=iso(utcnow())))
                applied_now.append(migration.name)
        return applied_now

    def applied_migrations(self) -> list[str]:
        with self.reading() as conn:
            return [row[0] for row in conn.execute(
                sa.select(schema_migrations.c.name).order_by(schema_migrations.c.name))]

    # -- meta ------------------------------------------------------------------

    def get_meta(self, name: str) -> str | None:
        with self.reading() as conn:
            return conn.execute(sa.select(meta.c.value).where(meta.c.name == name)).scalar()

    def get_meta_many(self, names: Iterable[str]) -> dict[str, str | None]:
        wanted = list(names)
        with self.reading() as conn:
            found: dict[str, str] = dict(conn.execute(sa.select(meta.c.name, meta.c.value)
                                      .where(meta.c.name.in_(wanted))).all())
        return {name: found.get(name) for name in wanted}

    def set_meta(self, values: dict[str, str], conn: Connection | None = None) -> None:
        if conn is None:
            with self.transaction() as own:
                self.set_meta(values, own)
            return
        if not values:
            return
        conn.execute(meta.delete().where(meta.c.name.in_(list(values))))
        conn.execute(meta.insert(), [{"name": k, "value": v} for k, v in values.items()])

    # -- articles --------------------------------------------------------------

    def load_articles(self) -> dict[str, StoredArticle]:
        with self.reading() as conn:
            rows = conn.execute(sa.select(articles)).all()
        return {row.key: _article_from_row(row._mapping) for row in rows}

    def latest_articles(self, limit: int, now: datetime) -> list[StoredArticle]:
        """The newest `limit` published articles (published by `now`), newest first.

        Dates are stored with their own offsets, so they are compared here, not as text.
        """
        with self.reading() as conn:
            dated = [(from_iso(published), key) for key, published in conn.execute(
                sa.select(articles.c.key, articles.c.published)
                .where(articles.c.status == "published"))]
            keys = [key for when, key in sorted(dated, reverse=True) if when <= now][:limit]
            rows = conn.execute(sa.select(articles).where(articles.c.key.in_(keys))).all() \
                if keys else []
        found = {row.key: _article_from_row(row._mapping) for row in rows}
        return [found[key] for key in keys if key in found]

    def save_articles(self, changed: Sequence[StoredArticle], removed: Iterable[str],
                      meta_values: dict[str, str] | None = None) -> None:
        """Replace the rows of changed articles, delete removed ones, in one transaction."""
        doomed = [a.key for a in changed] + list(removed)
        with self.transaction() as conn:
            for start in range(0, len(doomed), 500):
                conn.execute(articles.delete().where(articles.c.key.in_(doomed[start:start + 500])))
            for start in range(0, len(changed), 1000):  # in batches: bounded memory
                conn.execute(articles.insert(),
                             [_article_to_row(a) for a in changed[start:start + 1000]])
            if meta_values:
                self.set_meta(meta_values, conn)


def _article_to_row(a: StoredArticle) -> dict[str, Any]:
    return {
        "key": a.key, "entry_id": a.entry_id, "slug": a.slug, "size": a.size,
        "mtime_ns": a.mtime_ns, "content_hash": a.content_hash,
        "first_seen": iso(a.first_seen), "last_changed": iso(a.last_changed),
        "published": iso(a.published), "updated": iso(a.updated), "title": a.title,
        "author": a.author, "tags": json.dumps(list(a.tags), ensure_ascii=False),
        "summary": a.summary, "status": a.status, "image": a.image, "enclosure": a.enclosure,
        "refs": _json_list(a.references), "warnings": _json_list(a.warnings),
    }


def _json_list(items: tuple[str, ...]) -> str:
    return json.dumps(list(items), ensure_ascii=False) if items else "[]"


def _from_json_list(text: str) -> tuple[str, ...]:
    return () if text == "[]" else tuple(json.loads(text))


def _article_from_row(row: Any) -> StoredArticle:
    return StoredArticle(
        key=row["key"], entry_id=row["entry_id"], slug=row["slug"], size=row["size"],
        mtime_ns=row["mtime_ns"], content_hash=row["content_hash"],
        first_seen=from_iso(row["first_seen"]), last_changed=from_iso(row["last_changed"]),
        published=from_iso(row["published"]), updated=from_iso(row["updated"]),
        title=row["title"], author=row["author"], tags=tuple(json.loads(row["tags"])),
        summary=row["summary"], status=row["status"], image=row["image"],
        enclosure=row["enclosure"], references=_from_json_list(row["refs"]),
        warnings=_from_json_list(row["warnings"]),
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
