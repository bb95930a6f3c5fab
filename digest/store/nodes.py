"""Several `digest run` nodes on one PostgreSQL store: who runs, who leads, which fires ran.

* ``nodes``: each node registers a row and heartbeats it every LEADER_LEASE/3;
  a row whose heartbeat is older than LEADER_LEASE is *stale* (its process died,
  or cannot reach the database), and the leader deletes rows a day old.
* The leader holds a session ``pg_try_advisory_lock`` on a dedicated connection
  (:class:`LeaderLock`), the same key as the one-per-store lock of
  :mod:`digest.store.lock`, so `digest status` names the leader the same way.
  The server ends the session of a process that dies (and, through TCP
  keepalives set to a third of the lease, of a host that vanishes), and the
  lock goes with it.
* ``job_fires``: one row per (job, scheduled fire time), inserted before the
  job body runs (:func:`claim_fire`). The primary key lets one node fire it,
  even when two believe they lead for a moment.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from digest.store.database import Store, resolve_url, store_error
from digest.store.lock import _PG_KEY
from digest.store.schema import job_fires, nodes
from digest.store.timestamps import from_iso, stamp

LEADER = "leader"
FOLLOWER = "follower"
KEEP_NODES = timedelta(days=1)  # rows of nodes silent this long are deleted
KEEP_FIRES = timedelta(days=7)  # and fires this old (catch-up never reaches so far back)


@dataclass(frozen=True)
class Node:
    """A `digest run` process as its row says."""

    node_id: str
    host: str
    pid: int
    started_at: datetime
    heartbeat: datetime
    role: str  # leader | follower

    def stale(self, now: datetime, lease: timedelta) -> bool:
        """No heartbeat for a lease: the process died or lost the database."""
        return now - self.heartbeat > lease


def is_shared(database_url: str, base_dir: Path) -> bool:
    """Whether several `digest run` nodes may share this store (PostgreSQL)."""
    return make_url(resolve_url(database_url, base_dir)).get_backend_name() == "postgresql"


def new_node_id() -> str:
    return f"{socket.gethostname()}|{os.getpid()}|{uuid.uuid4().hex[:8]}"


# -- rows ---------------------------------------------------------------------------------


def register(store: Store, node_id: str, now: datetime, role: str = FOLLOWER) -> None:
    host, pid, _ = _split(node_id)
    with store.transaction() as conn:
        conn.execute(nodes.delete().where(nodes.c.node_id == node_id))
        conn.execute(nodes.insert().values(node_id=node_id, host=host, pid=pid,
                                           started_at=stamp(now), heartbeat=stamp(now),
                                           role=role))


def heartbeat(store: Store, node_id: str, now: datetime, role: str, started: datetime) -> None:
    """Say this node is alive, in this role (its row comes back if it was deleted)."""
    with store.transaction() as conn:
        updated = conn.execute(nodes.update().where(nodes.c.node_id == node_id)
                               .values(heartbeat=stamp(now), role=role)).rowcount
        if not updated:
            host, pid, _ = _split(node_id)
            conn.execute(nodes.insert().values(node_id=node_id, host=host, pid=pid,
                                               started_at=stamp(started),
                                               heartbeat=stamp(now), role=role))


def leave(store: Store, node_id: str) -> None:
    """A node that stops cleanly removes its row."""
    with store.transaction() as conn:
        conn.execute(nodes.delete().where(nodes.c.node_id == node_id))


def list_nodes(store: Store) -> list[Node]:
    """Every registered node, leaders first, then by host and pid."""
    with store.reading() as conn:
        rows = conn.execute(sa.select(nodes)).all()
    found = [Node(r.node_id, r.host, int(r.pid), from_iso(r.started_at), from_iso(r.heartbeat),
                  r.role) for r in rows]
    return sorted(found, key=lambda n: (n.role != LEADER, n.host, n.pid, n.node_id))


def prune(store: Store, now: datetime) -> None:
    """Delete node rows silent for KEEP_NODES and fire rows older than KEEP_FIRES."""
    with store.transaction() as conn:
        conn.execute(nodes.delete().where(nodes.c.heartbeat < stamp(now - KEEP_NODES)))
        conn.execute(job_fires.delete().where(job_fires.c.fire_time < stamp(now - KEEP_FIRES)))


def claim_fire(store: Store, job: str, fire_time: datetime, node_id: str,
               now: datetime) -> str | None:
    """Take the fire of `job` due at `fire_time` for this node.

    None: this node took it and runs the job; else the id of the node that
    took it first (the job must not run here).
    """
    due = stamp(fire_time)
    try:
        with store.writing(), store.engine.begin() as conn:
            conn.execute(job_fires.insert().values(job=job, fire_time=due, node_id=node_id,
                                                   fired_at=stamp(now)))
        return None
    except IntegrityError:
        pass
    except SQLAlchemyError as exc:
        raise store_error(exc) from exc
    with store.reading() as conn:
        holder = conn.execute(sa.select(job_fires.c.node_id).where(
            job_fires.c.job == job, job_fires.c.fire_time == due)).scalar()
    return str(holder or "another node")


def fires(store: Store, job: str) -> list[tuple[datetime, str]]:
    """(fire time, node id) of each recorded fire of `job`, oldest first."""
    with store.reading() as conn:
        rows = conn.execute(sa.select(job_fires.c.fire_time, job_fires.c.node_id)
                            .where(job_fires.c.job == job)
                            .order_by(job_fires.c.fire_time)).all()
    return [(from_iso(r.fire_time), r.node_id) for r in rows]


def node_name(node_id: str) -> str:
    """'pid 4242 on mail-2', from a node id."""
    host, pid, _ = _split(node_id)
    return f"pid {pid} on {host}" if pid else node_id


def _split(node_id: str) -> tuple[str, int, str]:
    parts = node_id.split("|")
    if len(parts) == 3 and parts[1].isdigit():
        return parts[0], int(parts[1]), parts[2]
    return node_id, 0, ""


# -- the leader lock ---------------------------------------------------------------------


class LeaderLock:
    """``pg_try_advisory_lock`` on a dedicated connection: held means leading.

    `holder` (pid, host, start) is the session's application name, which
    `digest status` shows for the holder. The connection is psycopg's own (no
    pool): closing it ends the session, and the lock with it.
    """

    def __init__(self, database_url: str, base_dir: Path, holder: str,
                 lease: timedelta) -> None:
        url = make_url(resolve_url(database_url, base_dir))
        self._conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self.description = f"leader lock on {url.render_as_string(hide_password=True)}"
        self._holder = holder
        self._lease = lease
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.RLock()  # the node's thread and the scheduler's both ask
        self.held = False

    def try_acquire(self) -> bool:
        """Take the lock if nobody holds it; False when another node does (or no database)."""
        with self._lock:
            if self.held:
                return self._alive()
            try:
                conn = self._connection()
                row = conn.execute("SELECT pg_try_advisory_lock(%s, hashtext(current_schema()))",
                                   (_PG_KEY,)).fetchone()
            except psycopg.Error:
                self._drop()
                return False
            self.held = bool(row and row[0])
            return self.held

    def alive(self) -> bool:
        """Whether the lock is still held (the session may have been lost)."""
        with self._lock:
            return self._alive()

    def _alive(self) -> bool:
        if not self.held or self._conn is None:
            return False
        try:
            self._conn.execute("SELECT 1")
        except psycopg.Error:
            self._drop()
            return False
        return True

    def release(self) -> None:
        """Give the lock up (closing the session ends it)."""
        with self._lock:
            self._drop()

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is not None:
            return self._conn
        third = max(1, int(self._lease.total_seconds() / 3))
        # The client notices a vanished server within about a lease...
        self._conn = conn = psycopg.connect(
            self._conninfo, autocommit=True, application_name=f"digest run: {self._holder}"[:63],
            connect_timeout=third, keepalives=1, keepalives_idle=third,
            keepalives_interval=max(1, third // 3), keepalives_count=3,
            tcp_user_timeout=third * 1000)
        # ...and the server a vanished leader, whose lock then goes to another node.
        for name, value in (("tcp_keepalives_idle", third),
                            ("tcp_keepalives_interval", max(1, third // 3)),
                            ("tcp_keepalives_count", 3)):
            conn.execute(f"SET {name} = {int(value)}".encode())
        return conn

    def _drop(self) -> None:
        held, self.held = self.held, False
        conn, self._conn = self._conn, None
        if conn is None:
            return
        with contextlib.suppress(psycopg.Error):
            if held:  # at once: a session's end is not seen by the server at once
                conn.execute("SELECT pg_advisory_unlock(%s, hashtext(current_schema()))",
                             (_PG_KEY,))
        with contextlib.suppress(psycopg.Error):
            conn.close()

    def __enter__(self) -> LeaderLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
