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
from digest.mail.send import send_digest
from digest.mail.smtp import Mailer, SMTPMailer
from digest.service.jobs import DEFAULT_JOBS, SEND, Job, JobContext, JobResult, send_result
from digest.service.scheduler import Clock, Service
from digest.settings import Settings
from digest.store import nodes as node_rows
from digest.store.database import Store
from digest.store.edition_reports import claimable
from digest.store.nodes import FOLLOWER, LEADER, LeaderLock, new_node_id
from digest.store.runs import STOPPED

log = logging.getLogger("digest.schedule")

RESUME_EVERY = 3.0  # seconds between a node's looks for deliveries it could help with
RESUME = "resume-send"


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
        self.mailer_factory = mailer_factory or (lambda: SMTPMailer(settings))
        self.resume_every = resume_every
        self.service: Service | None = None
        self._sending = threading.Lock()  # one send at a time in this process
        self.jobs = dict(jobs)
        if SEND in jobs:
            self.jobs[SEND] = self._one_send_at_a_time(jobs[SEND])

    @property
    def role(self) -> str:
        return LEADER if self.service is not None else FOLLOWER

    def run(self) -> None:
        """Register, then elect, heartbeat and send until stopped; leave cleanly."""
        node_rows.register(self.store, self.node_id, self.started)
        log.info("node %s registered (LEADER_LEASE %g s)", node_rows.node_name(self.node_id),
                 self.lease.total_seconds())
        sender = threading.Thread(target=self._resume_loop, name="digest-resume", daemon=True)
        sender.start()
        tick = self.lease.total_seconds() / 3
        try:
            while not self.stop.is_set():
                self._tick()
                self._wait(tick)
        finally:
            self.stop.set()
            self._step_down(None)
            sender.join()
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

    def _one_send_at_a_time(self, job: Job) -> Job:
        def send(ctx: JobContext) -> JobResult:
            while not self._sending.acquire(timeout=0.5):
                if ctx.should_stop():
                    return JobResult("not started: stopping", STOPPED)
            try:
                return job(ctx)
            finally:
                self._sending.release()

        return send

    # -- every node sends ------------------------------------------------------------------

    def _resume_loop(self) -> None:
        while not self.stop.wait(self.resume_every):
            try:
                self._resume_once()
            except DigestError as exc:
                hint = f" (hint: {exc.hint})" if exc.hint else ""
                log.error("%s failed: %s%s; trying again in %g s", RESUME, exc.message, hint,
                          self.resume_every, extra={"job": RESUME})
            except Exception as exc:
                log.exception("%s failed: %s: %s", RESUME, type(exc).__name__, exc,
                              extra={"job": RESUME})

    def _resume_once(self) -> None:
        if not claimable(self.store, self.clock()):
            return
        if not self._sending.acquire(blocking=False):
            return  # this node's scheduled send is at it
        try:
            report = send_digest(self.settings, self.store, self.mailer_factory, self.clock(),
                                 should_stop=self.stop.is_set, resume_only=True)
        finally:
            self._sending.release()
        if report.edition is not None and (report.sent or report.failed or report.deferred):
            result = send_result(report)
            log.info("%s: %s", RESUME, result.summary, extra={"job": RESUME})
