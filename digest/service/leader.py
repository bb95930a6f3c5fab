"""`digest run` as one of several nodes on a PostgreSQL store.

Every node registers in the ``nodes`` table and, every LEADER_LEASE/3:

* heartbeats its row (and says whether it leads);
* if it does not lead, tries to take the leader lock (:class:`LeaderLock`);
  the node that holds it starts the scheduler (:class:`Service`: publish,
  send-digest, fetch-bounces) with a fire guard: each fire of a job is a row
  of ``job_fires`` inserted before the job runs, so two leaders of a moment
  never both run it. A new leader catches up on a digest missed while nobody
  led (within MISFIRE_GRACE_TIME), as a restarted service does;
* if it leads, checks that it still holds the lock; a leader that lost it
  stops its scheduler (a send stops between messages) and follows.

Every node also sends: every :data:`RESUME_EVERY` seconds it looks for
deliveries of an open edition it could claim, and if there are, runs a send
that only resumes (it never creates an edition). Claims are batches taken
with ``FOR UPDATE SKIP LOCKED`` under a lease, so the nodes share the
edition; the leader's scheduled send and this one never run at once in one
process (one SMTP_RATE_LIMIT per process).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

from digest.errors import DigestError
from digest.mail.smtp import Mailer, SMTPMailer
from digest.service.jobs import DEFAULT_JOBS, SEND, Job
from digest.service.resume import RESUME_EVERY, Resumer
from digest.service.scheduler import Clock, Service
from digest.settings import Settings
from digest.store import nodes as node_rows
from digest.store.database import Store
from digest.store.nodes import FOLLOWER, LEADER, LeaderLock, new_node_id

log = logging.getLogger("digest.schedule")


def shared(settings: Settings) -> bool:
    """Whether `digest run` runs as one of several nodes (a PostgreSQL DATABASE_URL)."""
    return node_rows.is_shared(settings.database_url, settings.base_dir)


class Node:
    """One `digest run` on a shared store: run() until `stop` is set."""

    def __init__(self, settings: Settings, store: Store, clock: Clock, stop: threading.Event,
                 jobs: Mapping[str, Job] = DEFAULT_JOBS,
                 mailer_factory: Callable[[], Mailer] | None = None,
                 resume_every: float = RESUME_EVERY) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.stop = stop
        self.node_id = new_node_id()
        self.started = clock()
        self.lease = timedelta(seconds=settings.leader_lease)
        holder = (f"pid {os.getpid()} on {socket.gethostname()} since "
                  f"{self.started.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC")
        self.lock = LeaderLock(settings.database_url, settings.base_dir, holder, self.lease)
        self.resumer = Resumer(settings, store, clock, stop,
                               mailer_factory or (lambda: SMTPMailer(settings)), resume_every)
        self.service: Service | None = None
        self.jobs = dict(jobs)
        if SEND in jobs:
            self.jobs[SEND] = self.resumer.one_at_a_time(jobs[SEND])

    @property
    def role(self) -> str:
        return LEADER if self.service is not None else FOLLOWER

    def run(self) -> None:
        """Register, then elect, heartbeat and send until stopped; leave cleanly."""
        node_rows.register(self.store, self.node_id, self.started)
        log.info("node %s registered (LEADER_LEASE %g s)", node_rows.node_name(self.node_id),
                 self.lease.total_seconds())
        self.resumer.start()
        tick = self.lease.total_seconds() / 3
        try:
            while not self.stop.is_set():
                self._tick()
                self._wait(tick)
        finally:
            self.stop.set()
            self._step_down(None)
            self.resumer.join()
            self.lock.release()
            try:
                node_rows.leave(self.store, self.node_id)
            except DigestError as exc:
                log.warning("cannot remove this node's row: %s", exc.message)

    def _wait(self, seconds: float) -> None:
        """Sleep in short steps (the main thread still takes signals)."""
        left = seconds
        while left > 0 and not self.stop.wait(min(left, 0.5)):
            left -= 0.5

    def _tick(self) -> None:
        if self.service is not None and (self.service.stop.is_set() or not self.lock.alive()):
            self._step_down("lost the leader lock (the database session ended)")
        if self.service is None and not self.stop.is_set() and self.lock.try_acquire():
            self._lead()
        try:
            node_rows.heartbeat(self.store, self.node_id, self.clock(), self.role, self.started)
            if self.service is not None:
                node_rows.prune(self.store, self.clock())
        except DigestError as exc:
            log.error("cannot heartbeat in the state store: %s", exc.message)

    def _lead(self) -> None:
        service = Service(self.settings, self.store, self.clock, jobs=self.jobs,
                          stop=threading.Event(), lock=self.lock, guard=self._guard)
        try:
            service.start()
        except DigestError as exc:
            log.error("took the leader lock but cannot start the scheduler: %s; trying again "
                      "in %g s", exc.message, self.lease.total_seconds() / 3)
            self.lock.release()
            return
        self.service = service
        log.info("node %s is the leader: it runs the scheduled jobs",
                 node_rows.node_name(self.node_id))

    def _step_down(self, why: str | None) -> None:
        service, self.service = self.service, None
        if service is None:
            return
        if why:
            log.error("node %s stops leading: %s; another node takes over",
                      node_rows.node_name(self.node_id), why)
        service.shutdown()
        self.lock.release()

    def _guard(self, job: str, fire_time: datetime) -> str | None:
        holder = node_rows.claim_fire(self.store, job, fire_time, self.node_id, self.clock())
        return None if holder is None else node_rows.node_name(holder)

