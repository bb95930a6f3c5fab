"""Reader processes: run a function over many items, inline or in a pool started lazily.

All the state of the pool is in a :class:`Workers` object made per publish. A
reader process keeps its own :class:`Reader` (set by the pool's initializer,
the one module-level variable, and only ever set in a reader process, which
lives for one publish).
"""

from __future__ import annotations

import collections
import contextlib
import functools
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TypeVar

import jinja2

from digest import templates
from digest.errors import DigestError
from digest.model import SiteInfo, site_info
from digest.publish.feeds import FeedMeta
from digest.settings import Settings

T = TypeVar("T")
R = TypeVar("R")
WINDOW_CHUNKS = 8  # chunks per reader sent ahead (pickled items wait in memory until taken)


@dataclass(frozen=True)
class Job:
    """What a reader process needs to read articles and write their pages (picklable)."""

    settings: Settings
    now: datetime
    new_root: Path
    previous_root: Path | None
    meta: FeedMeta


@dataclass
class Reader:
    """What reading and rendering need: made per publish (inline) or per reader process.

    Never kept at module level in the publishing process: a publish that fails
    must not leave state (the folders made in its removed generation) to the next.
    """

    job: Job
    env: jinja2.Environment
    site: SiteInfo
    made: set[str] = field(default_factory=set)  # folders created in the new generation

    @classmethod
    def of(cls, job: Job) -> Reader:
        return cls(job, templates.environment(job.settings.templates_dir), site_info(job.settings))


_process_reader: Reader | None = None  # set only in a reader process, which lives one publish


class Workers:
    """Runs a function over many items: inline, or in a pool of processes started lazily.

    Processes are started with "spawn", not "fork": the scheduler and the web
    server run threads in this process, and forking those is unsafe. Each reader
    holds the read end of a pipe whose only write end is here (the lifeline): when
    this process ends, however it ends (SIGKILL too), the readers see EOF and exit.
    """

    def __init__(self, job: Job) -> None:
        self.job = job
        self.count = min(os.cpu_count() or 1, 4)
        self._pool: ProcessPoolExecutor | None = None
        self._inline: Reader | None = None
        self._lifeline: tuple[Connection, Connection] | None = None

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if self._pool is None or self._lifeline is None:
            return
        if exc_type is not None:
            self._lifeline[1].close()  # failed or stopped: readers exit now, queued work or not
        self._pool.shutdown(cancel_futures=True)
        for end in self._lifeline:
            end.close()

    def map(self, function: Callable[[Reader, T], R], items: list[T],
            parallel_from: int) -> Iterator[R]:
        if self._pool is None and (len(items) < parallel_from or self.count < 2
                                   or not _can_spawn()):
            if self._inline is None:
                self._inline = Reader.of(self.job)
            return map(functools.partial(function, self._inline), items)
        pool = self._start()
        chunk = max(1, min(200, len(items) // (self.count * 8)))
        return _reported(_windows(pool, functools.partial(_in_reader, function), items, chunk,
                                  chunk * self.count * WINDOW_CHUNKS))

    def _start(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # Not max_tasks_per_child: with it, Python 3.11's pool can hang when a worker
            # is replaced (seen here at 100,000 articles).
            self._lifeline = multiprocessing.Pipe(duplex=False)
            self._pool = ProcessPoolExecutor(
                self.count, mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_reader, initargs=(self.job, self._lifeline[0]))
        return self._pool


def _windows(pool: ProcessPoolExecutor, function: Callable[[T], R], items: list[T], chunk: int,
             window: int) -> Iterator[R]:
    """pool.map over windows of items, the next window queued while one is taken in: what
    waits to be sent (pickled) stays bounded however many items, and no reader idles."""
    pending: collections.deque[Iterator[R]] = collections.deque()
    for start in range(0, len(items), window):
        try:  # map submits the window's chunks at once: a reader killed by now breaks it
            pending.append(pool.map(function, items[start:start + window], chunksize=chunk))
        except BrokenProcessPool as exc:
            raise _reader_lost() from exc
        if len(pending) > 1:
            yield from pending.popleft()
    while pending:
        yield from pending.popleft()


def _reported(results: Iterator[R]) -> Iterator[R]:
    """The results of reader processes; one that was killed (OOM, a signal) is a message."""
    try:
        yield from results
    except BrokenProcessPool as exc:
        raise _reader_lost() from exc


def _reader_lost() -> DigestError:
    return DigestError("a reader process of the publish ended unexpectedly (killed, or out "
                       "of memory); the previous output is kept",
                       "run `digest publish` again; if it recurs, check the system log "
                       "for the out-of-memory killer")


def _can_spawn() -> bool:
    """Spawned processes re-import __main__: possible from a file or module, not from stdin."""
    main = sys.modules.get("__main__")
    if main is None or getattr(main, "__spec__", None) is not None:
        return True
    path = getattr(main, "__file__", None)
    return path is None or os.path.isfile(path)


def _init_reader(job: Job, lifeline: Connection) -> None:
    """Start a reader process: its state, and a thread that ends it when the parent ends."""
    global _process_reader
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the group: the parent decides
    threading.Thread(target=_exit_with_parent, args=(lifeline,), daemon=True).start()
    _process_reader = Reader.of(job)


def _exit_with_parent(lifeline: Connection) -> None:
    with contextlib.suppress(EOFError, OSError):
        lifeline.recv_bytes()  # nothing is ever sent: this returns when the write end closes
    os._exit(1)


def _in_reader(function: Callable[[Reader, T], R], item: T) -> R:
    assert _process_reader is not None
    return function(_process_reader, item)
