"""Marking deliveries sent in groups: one writer thread, group commit, a connection of its own.

The SMTP workers of a send queue "this delivery was accepted" here instead of
each committing its own :meth:`digest.store.claims.Claims.mark_sent`; see
:class:`Recorder`.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from digest.store.claims import SENDING, SENT, SETTLE, Claims, Delivery
from digest.store.database import store_error
from digest.store.timestamps import stamp

log = logging.getLogger("digest.mail")

# PostgreSQL: SETTLE (status sent) for a group of deliveries given as arrays, in one
# statement; RETURNING names the rows marked (the others' claims were lost). Its text
# never changes, so the driver prepares it once.
_SENT_MANY_PG = """
UPDATE deliveries AS d
SET status = %s, claimed_by = NULL, claimed_until = NULL,
    attempts = d.attempts + v.attempts, updated_at = v.updated_at, reply = NULL
FROM unnest(%s::integer[], %s::text[], %s::integer[], %s::text[])
     AS v(edition_id, recipient, attempts, updated_at)
WHERE d.edition_id = v.edition_id AND d.recipient = v.recipient
  AND d.claimed_by = %s AND d.status = %s
RETURNING d.edition_id, d.recipient
"""


class Recorder:
    """Marks deliveries sent for every sender thread of a process: one writer, group commit.

    ``submit()`` queues "this delivery was accepted" and returns a future that
    resolves (True: recorded; False: the claim was lost) once the record is
    committed. One writer thread takes every request queued meanwhile and
    commits them together, in one transaction of the same compare-and-set
    UPDATEs as :meth:`Claims.mark_sent` (compiled once, run through the
    driver's cursor). So SMTP workers waiting at the same moment share one
    commit (group commit), each record is as durable as its own commit would
    be, and SQLite sees one writer. The connection is opened by the writer at
    its first batch and kept until close().

    On PostgreSQL the group is one statement (:data:`_SENT_MANY_PG`: the same
    compare-and-set over the group's rows as arrays, ``RETURNING`` the rows it
    marked) on a connection in autocommit: one round trip per group, the
    statement's own transaction committed (with the server's
    ``synchronous_commit``) before its reply comes back.

    `senders` is how many threads submit records, each with at most one
    record not yet written (an SMTP worker waits for its record before its
    next message is accepted). With several, the writer holds a group until
    every sender has a record in it, or one of them needs its record now
    (:meth:`hurry`), or `max_wait` has passed since the group's first record:
    records come due well after they are queued (the next message's
    envelope and data go out first), so waiting for the others makes groups
    larger (fewer statements, less work for both sides) without making a
    sender wait longer than one commit. With one sender each record is
    written at once.
    """

    def __init__(self, claims: Claims, senders: int = 1, max_wait: float = 0.05) -> None:
        self.claims = claims  # whose deliveries it marks
        self.senders = senders  # may change while running (workers that end)
        self.max_wait = max_wait
        self._engine = claims.store.engine
        compiled = SETTLE.compile(dialect=self._engine.dialect)
        self._sql = compiled.string
        self._order = compiled.positiontup  # None: the driver takes named parameters
        # The values fixed in the statement (status, claimed_by), besides ours.
        self._base: dict[str, Any] = dict(compiled.construct_params(dict.fromkeys((
            "p_edition", "p_recipient", "p_owner", "p_status", "p_until", "p_attempts",
            "p_now", "p_reply"))))
        self._pg = self._engine.dialect.name == "postgresql"
        self._conn: Any = None  # the driver's connection, used by the writer thread only
        self._queue: queue.SimpleQueue[_Request | _Hurry | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._start = threading.Lock()
        self._closed = False
        self.commits = 0  # transactions committed (fewer than records: group commit)

    def submit(self, delivery: Delivery, now: datetime, attempts: int) -> Future[bool]:
        """Queue the record; the future holds True (recorded), False (claim lost) or the
        StoreError."""
        request = _Request((delivery, now, attempts), Future())
        with self._start:
            if self._closed:
                raise RuntimeError("the recorder is closed")
            if self._writer is None:
                self._writer = threading.Thread(target=self._serve, name="digest-record",
                                                daemon=True)
                self._writer.start()
            self._queue.put(request)
        return request.future

    def hurry(self, future: Future[bool]) -> None:
        """The sender of `future`'s record needs it now: write its group without waiting."""
        if not future.done():
            self._queue.put(_Hurry(future))

    def mark_sent(self, delivery: Delivery, now: datetime, attempts: int) -> bool:
        """Like Claims.mark_sent: True if recorded, False if the claim was lost."""
        future = self.submit(delivery, now, attempts)
        self.hurry(future)
        return future.result()

    def mark_sent_many(self, items: Sequence[tuple[Delivery, datetime, int]]) -> list[bool]:
        """Record `items` in one transaction (called by the writer thread)."""
        results: list[bool] = []
        with self.claims.store.writing():
            try:
                conn = self._open()
                cursor = conn.cursor()
                try:
                    results = (self._sent_many_pg(cursor, items) if self._pg
                               else self._sent_each(cursor, items))
                finally:
                    cursor.close()
                conn.commit()
                self.commits += 1
            except (SQLAlchemyError, self._engine.dialect.loaded_dbapi.Error) as exc:
                self._close_connection()
                raise store_error(exc) from exc
        for (delivery, _now, _attempts), done in zip(items, results, strict=True):
            if not done:
                log.warning("delivery of edition %d to %s was taken over by another sender",
                            delivery.edition_id, delivery.recipient)
        return results

    def close(self) -> None:
        """Finish the queued records, then stop the writer and close its connection."""
        with self._start:
            self._closed = True
            writer = self._writer
            if writer is not None:
                self._queue.put(None)
        if writer is not None:
            writer.join()

    def _serve(self) -> None:
        try:
            stop = False
            while not stop:
                batch, stop = self._collect()
                if not batch:
                    continue
                try:
                    results = self.mark_sent_many([r.item for r in batch])
                except BaseException as exc:  # handed to every waiting sender
                    for request in batch:
                        request.future.set_exception(exc)
                else:
                    for request, done in zip(batch, results, strict=True):
                        request.future.set_result(done)
        finally:
            self._close_connection()

    def _collect(self) -> tuple[list[_Request], bool]:
        """The next group to write (see the class notes), and whether close() was called."""
        batch: list[_Request] = []
        hurried = False
        deadline = 0.0
        while True:
            if not batch:
                item = self._queue.get()
            else:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    left = deadline - time.monotonic()
                    if hurried or len(batch) >= self.senders or left <= 0:
                        return batch, False
                    try:
                        item = self._queue.get(timeout=left)
                    except queue.Empty:
                        return batch, False
            if item is None:
                return batch, True
            if isinstance(item, _Hurry):
                # A hurry for a record written already (in an earlier group) is stale.
                hurried = hurried or any(r.future is item.future for r in batch)
                continue
            if not batch:
                deadline = time.monotonic() + self.max_wait
            batch.append(item)

    def _sent_each(self, cursor: Any, items: Sequence[tuple[Delivery, datetime, int]]
                   ) -> list[bool]:
        """One compare-and-set UPDATE per record (committed together by the caller)."""
        results = []
        for delivery, now, attempts in items:
            values = dict(self._base)
            values.update(p_edition=delivery.edition_id, p_recipient=delivery.recipient,
                          p_owner=self.claims.owner, p_status=SENT, p_until=None,
                          p_attempts=attempts, p_now=stamp(now), p_reply=None)
            cursor.execute(self._sql, values if self._order is None
                           else [values[name] for name in self._order])
            results.append(bool(cursor.rowcount))
        return results

    def _sent_many_pg(self, cursor: Any, items: Sequence[tuple[Delivery, datetime, int]]
                      ) -> list[bool]:
        """PostgreSQL: the group in one autocommitted statement; which rows it marked."""
        cursor.execute(_SENT_MANY_PG, (
            SENT.value,
            [d.edition_id for d, _now, _attempts in items],
            [d.recipient for d, _now, _attempts in items],
            [attempts for _d, _now, attempts in items],
            [stamp(now) for _d, now, _attempts in items],
            self.claims.owner, SENDING.value))
        marked = {(int(edition_id), recipient) for edition_id, recipient in cursor.fetchall()}
        return [(d.edition_id, d.recipient) in marked for d, _now, _attempts in items]

    def _open(self) -> Any:
        if self._conn is None:
            conn: Any = self._engine.raw_connection()
            if self._pg:
                # Each group is one statement, committed on its own: no BEGIN, no COMMIT.
                conn.rollback()
                conn.driver_connection.autocommit = True
            self._conn = conn
        return self._conn

    def _close_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.rollback()
            if self._pg:
                try:
                    conn.driver_connection.autocommit = False  # back to the pool as it came
                except Exception:  # a broken connection: not reused
                    with contextlib.suppress(Exception):
                        conn.invalidate()
            with contextlib.suppress(Exception):
                conn.close()


@dataclass(frozen=True)
class _Request:
    item: tuple[Delivery, datetime, int]
    future: Future[bool]


@dataclass(frozen=True)
class _Hurry:
    future: Future[bool]  # of the record needed now

