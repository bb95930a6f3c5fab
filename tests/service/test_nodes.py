"""Several `digest run` nodes on one PostgreSQL store: election, the fire guard, node rows.

The leader lock and the nodes run against the real PostgreSQL server (a fresh
schema per test); the fire guard and the node rows also on SQLite.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from digest.service.jobs import PUBLISH, SEND
from digest.service.leader import Node
from digest.service.scheduler import JobRunner
from digest.service.status import service_status
from digest.store import nodes as node_rows
from digest.store import runs as job_runs
from digest.store.database import Store
from digest.store.edition_reports import claimable, history
from digest.store.nodes import LeaderLock
from digest.store.timestamps import iso
from tests.conftest import make_settings, wait_for
from tests.fixtures_mail import NOW, SMTPServer, add_articles, article
from tests.mail.test_mail_send import fill, run
from tests.service.test_schedule_service import NEVER, FakeJobs

LEASE = timedelta(seconds=3)


def clock() -> datetime:
    return datetime.now(UTC)


@pytest.fixture(autouse=True)
def _info_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="digest")


@pytest.fixture
def pg_url(database_url: str) -> str:
    if not database_url.startswith("postgresql"):
        pytest.skip("nodes share a PostgreSQL store; SQLite runs one `digest run`")
    return database_url


def test_one_node_holds_the_leader_lock_and_another_takes_it_when_it_goes(
        pg_url: str, tmp_path: Path) -> None:
    first = LeaderLock(pg_url, tmp_path, "pid 1 on a", LEASE)
    second = LeaderLock(pg_url, tmp_path, "pid 2 on b", LEASE)
    try:
        assert first.try_acquire() and first.alive()
        assert not second.try_acquire() and not second.alive()
        assert first.try_acquire()  # holding it, it still has it
        assert not second.try_acquire()
        first.release()
        assert not first.alive()
        assert second.try_acquire() and second.alive()
        assert not first.try_acquire()
    finally:
        first.release()
        second.release()


def test_a_leader_whose_session_ends_loses_the_lock(pg_url: str, tmp_path: Path,
                                                    store: Store) -> None:
    lock = LeaderLock(pg_url, tmp_path, "pid 1 on a", LEASE)
    other = LeaderLock(pg_url, tmp_path, "pid 2 on b", LEASE)
    try:
        assert lock.try_acquire()
        with store.engine.begin() as conn:  # as a server restart or a lost network would
            conn.exec_driver_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'digest run: pid 1 on a'")
        wait_for(lambda: not lock.alive(), "the lost session to be noticed")
        assert other.try_acquire()
    finally:
        lock.release()
        other.release()


def test_each_fire_is_taken_by_one_node_even_when_many_race(store: Store) -> None:
    due = datetime(2026, 5, 1, 7, 0, tzinfo=UTC)
    results: dict[int, str | None] = {}
    barrier = threading.Barrier(8)

    def take(n: int) -> None:
        barrier.wait()
        results[n] = node_rows.claim_fire(store, SEND, due, f"host|{n}|x", clock())

    threads = [threading.Thread(target=take, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    (winner,) = [n for n, holder in results.items() if holder is None]
    assert node_rows.fires(store, SEND) == [(due, f"host|{winner}|x")]
    assert {holder for n, holder in results.items() if n != winner} == {f"host|{winner}|x"}
    # Another fire time, or another job at the same time, is a fire of its own.
    assert node_rows.claim_fire(store, SEND, due + timedelta(days=1), "host|9|x", clock()) is None
    assert node_rows.claim_fire(store, PUBLISH, due, "host|9|x", clock()) is None
    assert node_rows.claim_fire(store, PUBLISH, due, "host|8|x", clock()) == "host|9|x"


def test_two_leaders_of_a_moment_run_a_fire_once(store: Store, tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    settings = make_settings(tmp_path, DIGEST_SCHEDULE=NEVER)
    jobs = FakeJobs()
    due = clock().replace(second=0, microsecond=0)

    def runner(node_id: str) -> JobRunner:
        return JobRunner(settings, store, jobs.mapping(), clock, threading.Event(),
                         guard=lambda job, at: node_rows.claim_fire(store, job, at, node_id,
                                                                    clock()))

    assert runner("a|1|x").run(SEND, due) == "ok"
    assert runner("b|2|y").run(SEND, due) == "skipped"
    assert len(jobs.calls[SEND]) == 1
    assert "was already taken by a|1|x; skipped" in caplog.text
    assert runner("b|2|y").run(SEND, due + timedelta(minutes=1)) == "ok"
    assert runner("b|2|y").run(PUBLISH) == "ok"  # no fire time (run once): no guard
    assert len(jobs.calls[SEND]) == 2


def test_nodes_register_heartbeat_go_stale_and_age_out(store: Store, tmp_path: Path) -> None:
    start = datetime(2026, 5, 1, 7, 0, tzinfo=UTC)
    node_rows.register(store, "mail-1|4242|aa", start)
    node_rows.register(store, "mail-2|77|bb", start)
    node_rows.heartbeat(store, "mail-2|77|bb", start + timedelta(seconds=40), "leader", start)
    later = start + timedelta(seconds=45)
    (leader, follower) = node_rows.list_nodes(store)
    assert (leader.host, leader.pid, leader.role) == ("mail-2", 77, "leader")
    assert (follower.host, follower.pid, follower.role) == ("mail-1", 4242, "follower")
    assert not leader.stale(later, timedelta(seconds=30))
    assert follower.stale(later, timedelta(seconds=30))
    settings = make_settings(tmp_path, LEADER_LEASE="30s")
    status = service_status(settings, store, later, holder=None)
    assert [(n.node.pid, n.stale) for n in status.nodes] == [(77, False), (4242, True)]
    # A deleted row comes back at the next heartbeat; a day-old one is deleted.
    node_rows.leave(store, "mail-2|77|bb")
    node_rows.heartbeat(store, "mail-2|77|bb", later, "leader", start)
    node_rows.prune(store, start + node_rows.KEEP_NODES + timedelta(seconds=10))
    assert [n.node_id for n in node_rows.list_nodes(store)] == ["mail-2|77|bb"]


# -- nodes in this process ----------------------------------------------------------------


@pytest.fixture
def nodes(pg_url: str, tmp_path: Path, store: Store) -> Iterator[Callable[..., Node]]:
    """nodes(jobs, **settings) starts a Node in a thread; all are stopped at the end."""
    started: list[tuple[Node, threading.Thread]] = []

    def start(jobs: FakeJobs, **values: str) -> Node:
        values.setdefault("DIGEST_SCHEDULE", NEVER)
        values.setdefault("PUBLISH_INTERVAL", "1h")
        settings = make_settings(tmp_path, DATABASE_URL=pg_url, LEADER_LEASE="3s", **values)
        node = Node(settings, store, clock, threading.Event(), jobs=jobs.mapping(),
                    resume_every=0.5)
        thread = threading.Thread(target=node.run, daemon=True)
        thread.start()
        started.append((node, thread))
        return node

    yield start
    for node, thread in started:
        node.stop.set()
        thread.join(30)


def test_one_node_leads_and_a_follower_takes_over_when_it_stops(
        nodes: Callable[..., Node], store: Store) -> None:
    jobs = FakeJobs()
    first = nodes(jobs)
    wait_for(lambda: first.role == "leader", "the first node to lead")
    second = nodes(jobs)
    wait_for(lambda: len(node_rows.list_nodes(store)) == 2, "both nodes registered")
    assert second.role == "follower"
    wait_for(lambda: len(jobs.calls[PUBLISH]) == 1, "the publish at start, by the leader")
    first.stop.set()
    wait_for(lambda: second.role == "leader", "the follower to take over", 10)
    wait_for(lambda: len(jobs.calls[PUBLISH]) == 2, "the new leader's publish")
    wait_for(lambda: [n.node_id for n in node_rows.list_nodes(store)] == [second.node_id],
             "the stopped node's row to go")


def test_a_new_leader_sends_a_digest_missed_while_nobody_led_once(
        nodes: Callable[..., Node], store: Store, caplog: pytest.LogCaptureFixture) -> None:
    due = clock().replace(second=0, microsecond=0) - timedelta(minutes=2)
    schedule = f"{due.minute} {due.hour} * * *"
    job_runs.cover(store, SEND, due - timedelta(minutes=1))  # the last leader ran before `due`
    jobs = FakeJobs()
    first = nodes(jobs, DIGEST_SCHEDULE=schedule)
    wait_for(lambda: len(jobs.calls[SEND]) == 1, "the missed digest")
    assert [(at, node) for at, node in node_rows.fires(store, SEND)] == [(due, first.node_id)]
    # The next leader finds the fire recorded (its run not completed, as if the
    # first leader died mid-send): the guard does not let it run a second time.
    wait_for(lambda: job_runs.last_run(store, SEND).outcome == "ok",  # type: ignore[union-attr]
             "the send's record")
    with store.transaction() as conn:
        conn.execute(sa.text("UPDATE job_runs SET covered_until = :at, outcome = 'running'"),
                     {"at": iso(due - timedelta(minutes=1))})
    first.stop.set()
    second = nodes(jobs, DIGEST_SCHEDULE=schedule)
    wait_for(lambda: second.role == "leader", "the second node to lead")
    wait_for(lambda: "was already taken by" in caplog.text,
             "the second leader to look at the missed digest", 10)
    assert len(jobs.calls[SEND]) == 1
    assert node_rows.fires(store, SEND) == [(due, first.node_id)]


def test_a_leader_whose_session_is_lost_steps_down(
        nodes: Callable[..., Node], store: Store, caplog: pytest.LogCaptureFixture) -> None:
    jobs = FakeJobs()
    first = nodes(jobs)
    wait_for(lambda: first.role == "leader", "the first node to lead")
    second = nodes(jobs)
    wait_for(lambda: len(node_rows.list_nodes(store)) == 2, "both nodes registered")
    with store.engine.begin() as conn:
        conn.exec_driver_sql(
            "SELECT pg_terminate_backend(l.pid) FROM pg_locks l WHERE l.locktype = "
            "'advisory' AND l.granted AND l.classid = 7351010 AND l.objid = "
            "CAST(hashtext(current_schema()) AS oid)")
    wait_for(lambda: "stops leading: lost the leader lock" in caplog.text,
             "the leader to notice its lost session", 10)
    wait_for(lambda: [n.lock.alive() for n in (first, second) if n.role == "leader"] == [True],
             "exactly one leader", 10)




# -- followers only resume ---------------------------------------------------------------


def test_a_resume_only_send_helps_with_an_open_edition_and_never_makes_one(
        tmp_path: Path, store: Store, smtp_servers: Callable[..., SMTPServer]) -> None:
    server = smtp_servers()
    settings = make_settings(tmp_path, **server.env(), SMTP_CONNECTIONS="2")
    addresses = fill(store, recipients=6)
    nothing = run(settings, store, resume_only=True)
    assert (nothing.edition, nothing.sent) == (None, 0)
    assert history(store) == [] and claimable(store, clock()) == 0
    first = run(settings, store, should_stop=lambda: len(server.received) >= 2)
    assert first.created and first.stopped
    assert claimable(store, clock()) == 6 - first.sent
    helped = run(settings, store, resume_only=True)
    assert (helped.edition, helped.created, helped.finished) == (first.edition, False, True)
    assert claimable(store, clock()) == 0
    assert sorted(r.rcpt_to for r in server.received) == addresses
    add_articles(store, article("009_new.txt", "Newer", NOW + timedelta(hours=1)))
    again = run(settings, store, resume_only=True)  # new articles: not its job
    assert again.edition is None and len(history(store)) == 1
