"""One `digest run` per state store: a lock held for the life of the process.

APScheduler 3 cannot share a job store between processes, so a second
scheduler on the same store must refuse to start. The lock is released by
the operating system or the database server when its holder dies, SIGKILL
included, so a crash never leaves a stale lock behind:

* SQLite: an exclusive ``flock`` on ``<database file>.run-lock`` next to the
  database (a local file system is assumed, as SQLite itself assumes);
* PostgreSQL: a session-level ``pg_advisory_lock`` held on a dedicated
  connection, keyed by the schema so two stores in one database do not
  collide. If that connection drops (server restart), the lock is gone:
  :meth:`ServiceLock.alive` says so and the service stops.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from digest.errors import ScheduleError
from digest.store.database import resolve_url

_PG_KEY = 7351010  # first half of the two-int advisory key; the second is the schema's hash
_HINT = ("stop the other `digest run` first (`digest status` shows whether one runs), "
         "or give this one its own DATABASE_URL")


class ServiceLock:
    """A held lock; :meth:`release` (or the end of the process) gives it up."""

    def __init__(self, description: str, fd: int | None = None,
                 engine: Engine | None = None, conn: Connection | None = None,
                 watched: tuple[Path, ...] = ()) -> None:
        self.description = description
        self._fd = fd
        self._engine = engine
        self._conn = conn
        # SQLite: the lock file and the database. Deleted or replaced, the lock no longer
        # keeps a second `digest run` out, and this one's state goes to a file nobody sees.
        self._watched = watched
        self._identities: dict[Path, tuple[int, int]] = {}
        if fd is not None and watched:
            st = os.fstat(fd)
            self._identities[watched[0]] = (st.st_dev, st.st_ino)
        self.why_lost: str | None = None

    def alive(self) -> bool:
        """Whether the lock is still held (a PostgreSQL session can be lost; a SQLite lock
        file or database deleted or replaced)."""
        if self._conn is None:
            return self._fd is not None and self._files_intact()
        try:
            self._conn.exec_driver_sql("SELECT 1")
            self._conn.commit()
        except SQLAlchemyError:
            return False
        return True

    def _files_intact(self) -> bool:
        for path in self._watched:
            try:
                st = os.stat(path)
                identity: tuple[int, int] | None = (st.st_dev, st.st_ino)
            except FileNotFoundError:
                identity = None
            known = self._identities.get(path)
            if known is None:
                if identity is not None:  # the database, made after the lock was taken
                    self._identities[path] = identity
                continue
            if identity != known:
                what = "deleted" if identity is None else "replaced"
                if path == self._watched[0]:
                    self.why_lost = (f"the lock file {path} was {what}: a second `digest run` "
                                     "could take the state store")
                else:
                    self.why_lost = (f"the state store {path} was {what}: what this service "
                                     "records would go to a file nobody sees (restore the "
                                     "file from a backup, else the next start begins anew)")
                return False
        return True

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
        if self._conn is not None:
            with contextlib.suppress(SQLAlchemyError):
                self._conn.close()  # ends the session: the advisory lock goes with it
            self._conn = None
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def __enter__(self) -> ServiceLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def acquire(database_url: str, base_dir: Path, now: datetime) -> ServiceLock:
    """Take the lock of this state store or raise ScheduleError naming who holds it."""
    url = resolve_url(database_url, base_dir)
    backend = make_url(url).get_backend_name()
    holder = f"pid {os.getpid()} on {socket.gethostname()} since {now.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
    if backend == "sqlite":
        return _acquire_file(url, holder)
    if backend == "postgresql":
        return _acquire_advisory(url, holder)
    raise ScheduleError(f"`digest run` cannot lock a {backend} state store",
                        "use a sqlite:/// or postgresql:// DATABASE_URL")


def holder(database_url: str, base_dir: Path, now: datetime) -> str | None:
    """Who holds the lock right now (a description), or None when nobody does."""
    try:
        lock = acquire(database_url, base_dir, now)
    except _Held as held:
        return held.holder or "another process"
    lock.release()
    return None


class _Held(ScheduleError):
    def __init__(self, shown: str, holder: str | None) -> None:
        who = f" ({holder})" if holder else ""
        super().__init__(f"another `digest run`{who} is already running on the state store "
                         f"{shown}", _HINT)
        self.holder = holder


def lock_path(url: str) -> Path | None:
    """The lock file of a SQLite database, None for an in-memory one."""
    database = make_url(url).database
    if not database or database == ":memory:":
        return None
    path = Path(database)
    return path.with_name(path.name + ".run-lock")


def _acquire_file(url: str, holder: str) -> ServiceLock:
    path = lock_path(url)
    if path is None:  # nothing else can open an in-memory store
        return ServiceLock("in-memory store")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise ScheduleError(f"cannot create the lock file {path}: {exc.strerror}",
                            "check that the folder of the SQLite database is writable") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        other = os.pread(fd, 300, 0).decode("utf-8", "replace").strip() or None
        os.close(fd)
        raise _Held(str(make_url(url).database), other) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, (holder + "\n").encode(), 0)
    return ServiceLock(f"lock file {path}", fd=fd,
                       watched=(path, path.with_name(path.name.removesuffix(".run-lock"))))


def _acquire_advisory(url: str, holder: str) -> ServiceLock:
    shown = make_url(url).render_as_string(hide_password=True)
    engine = sa.create_engine(url, poolclass=NullPool,
                              connect_args={"application_name": f"digest run: {holder}"[:63]})
    try:
        conn = engine.connect()
    except SQLAlchemyError as exc:
        engine.dispose()
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise ScheduleError(f"cannot open the state store {shown}: {reason}",
                            "check DATABASE_URL and that the database server runs") from exc
    try:
        got = conn.execute(sa.text("SELECT pg_try_advisory_lock(:key, hashtext(current_schema()))"),
                           {"key": _PG_KEY}).scalar()
        other = None if got else _advisory_holder(conn)
        conn.commit()
    except SQLAlchemyError as exc:
        conn.close()
        engine.dispose()
        raise ScheduleError(f"cannot lock the state store {shown}: {exc}",
                            "check that the database user may use advisory locks") from exc
    if not got:
        conn.close()
        engine.dispose()
        raise _Held(shown, other)
    return ServiceLock(f"advisory lock on {shown}", engine=engine, conn=conn)


def _advisory_holder(conn: Connection) -> str | None:
    """The application name the holder gave its session (it says pid, host and start)."""
    name = conn.execute(sa.text(
        "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 "
        "AND l.classid = CAST(:key AS oid) AND l.objid = CAST(hashtext(current_schema()) AS oid) "
        "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"),
        {"key": _PG_KEY}).scalar()
    if not name:
        return None
    return str(name).removeprefix("digest run: ")
