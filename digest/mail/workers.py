"""The SMTP workers of a send: one thread per connection, each sending its deliveries.

Connections: ``SMTP_CONNECTIONS`` workers (threads), each with its own
mailer (one SMTP session), take deliveries from one queue of claimed rows
(claimed from the outbox a batch at a time, under the process's one owner
name and lease). ``SMTP_RATE_LIMIT`` is one limit for the process: the
workers reserve send slots from one pacer. A refused or dropped connection
is that worker's trouble (it reconnects, with backoff); a reply saying the
server has too many connections from us (421/452 "too many connections")
ends that worker, its delivery going to another, so the run goes on over
fewer connections (never fewer than one).

Recording: a delivery is marked sent only after the server accepted it. To
keep the state store's write off the critical path, the record of a
worker's message i is queued as soon as the server accepts i and is written
while that worker's message i+1 goes out; i+1's end of data is sent only
once that record is committed (the mailer's ``meanwhile``). One writer
thread commits the records queued by all workers together (group commit;
on SQLite it is also the one writer). Before anything else (a stop, a
backoff, the end of the run) a worker waits for its record in flight. So at
any moment at most one message per connection is accepted and not yet
recorded: a kill re-sends at most one message per open connection, each
with the same Message-ID.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future

from digest.mail.personal import personal
from digest.mail.run import Run
from digest.mail.smtp import Mailer, OutcomeUnknown, PermanentFailure, TemporaryFailure
from digest.store.claims import Delivery

log = logging.getLogger("digest.mail")


def deliver(run: Run) -> None:
    """Send the run's edition over its workers, one thread each; raises a worker's error."""
    threads = [threading.Thread(target=_Worker(run, n).work, name=f"digest-smtp-{n}",
                                daemon=True) for n in range(run.start())]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(0.2)  # in steps: the main thread still takes signals
    except BaseException:
        # Interrupted (a second Ctrl-C): the workers end after their current message.
        run.halt.set()
        raise
    finally:
        run.end()
    if run.errors:
        raise run.errors[0]


class _Worker:
    """One SMTP connection: takes deliveries and sends them, one at a time.

    Its own message i is recorded (by the run's recorder) while its message
    i+1 goes out, and i+1's end of data waits for that record: per connection,
    at most one message is accepted and not yet recorded.
    """

    def __init__(self, run: Run, number: int) -> None:
        self.run = run
        self.number = number
        self._mailer: Mailer | None = None
        self._recording: Future[bool] | None = None
        self._recorded: Delivery | None = None  # the delivery _recording marks sent
        self._current: Delivery | None = None  # taken, and surely not accepted yet
        self._left = False

    def work(self) -> None:
        try:
            self._loop()
        except BaseException as exc:
            self.run.fail(exc)
        finally:
            try:
                self._record()
            except BaseException as exc:
                self.run.fail(exc)
            finally:
                if self._current is not None:
                    self.run.give_back(self._current)
                if not self._left:
                    self.run.leave()
                if self._mailer is not None:
                    self._mailer.close()

    def _loop(self) -> None:
        run = self.run
        while not run.check_stop():
            delivery = run.take()
            if delivery is None:
                return
            self._current = delivery
            if not self._deliver_one(delivery):
                self._left = True  # retired: fewer connections
                return
            self._current = None
            run.progressed(1)

    def _deliver_one(self, delivery: Delivery) -> bool:
        """Send one delivery and settle it; False if this worker retires instead."""
        run = self.run
        message = run.factory.factory(delivery.articles).build(personal(
            run.settings, run.edition, delivery.recipient, delivery.name,
            delivery.message_id, run.clock()))
        attempt = 0
        while True:
            attempt += 1
            self._pace()
            run.keep_lease()
            try:
                self._mailer_now().send(message, self._record)
            except OutcomeUnknown as exc:
                self._current = None  # the server may have it: never given back untouched
                self._record()
                run.lost_reply(delivery, attempt, exc)
                return True
            except PermanentFailure as exc:
                self._record()
                run.reached()
                log.warning("delivery to %s failed: %s", delivery.recipient, exc.reply)
                run.refused(delivery, attempt, exc)
                return True
            except TemporaryFailure as exc:
                self._record()
                if exc.too_many_connections and run.retire(delivery):
                    self._current = None  # handed to another worker
                    return False
                # A lost connection is the relay's trouble: name it (its message does);
                # else the server's reply is about this delivery.
                log.info("delivery to %s deferred (attempt %d): %s", delivery.recipient,
                         attempt, exc.message if exc.connection_lost else exc.reply)
                if attempt < run.retry.attempts and self._pause(run.retry.delay(attempt)):
                    continue
                run.deferred_now(delivery, attempt, exc)
                return True
            self._current = None
            run.reached()
            self._accepted(delivery, attempt)
            return True

    def _accepted(self, delivery: Delivery, attempts: int) -> None:
        """The server accepted `delivery`: start marking it sent (waits for any earlier write)."""
        self._record()
        self._recording = self.run.recorder.submit(delivery, self.run.clock(), attempts)
        self._recorded = delivery

    def _record(self) -> None:
        """Wait until this connection's last accepted message is marked sent (if not yet)."""
        recording = self._recording
        if recording is None:
            return
        self._recording = None  # failed or not, nothing left to wait for
        delivery, self._recorded = self._recorded, None
        self.run.recorder.hurry(recording)
        if recording.result():
            self.run.counted_sent()
            if delivery is not None and delivery.soft_bounce_since is not None:
                # Accepted: a recipient deferred until now no longer is.
                self.run.outbox.clear_soft_bounce(delivery.recipient)

    def _mailer_now(self) -> Mailer:
        if self._mailer is None:
            self._mailer = self.run.mailer_factory()
        return self._mailer

    def _pace(self) -> None:
        wait = self.run.slot()
        if wait > 0:
            self._record()
            self.run.sleep(wait)

    def _pause(self, seconds: float) -> bool:
        """Sleep `seconds` in steps of at most 1 s; False if the run ends meanwhile."""
        self._record()
        left = seconds
        while left > 0:
            if self.run.check_stop():
                return False
            step = min(left, 1.0)
            self.run.sleep(step)
            left -= step
            self.run.keep_lease()
        return True
