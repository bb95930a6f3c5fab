"""The outbox in the state store, on SQLite and PostgreSQL: editions, claims, concurrency."""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

from digest.mail.outbox import Outbox
from digest.mail.subscribers import subscribe_many, unsubscribe
from digest.store.database import Store
from digest.store.edition_reports import history
from tests.fixtures_mail import NOW, add_articles, article, sample_articles


def mid(uid: str, address: str) -> str:
    return f"<{uid}.{address}@test>"


def setup(store: Store, recipients: int = 3, articles: int = 3) -> None:
    add_articles(store, *sample_articles(articles))
    subscribe_many(store, [(f"r{i:03d}@example.org", None) for i in range(recipients)], NOW,
                   source="cli")


def test_edition_collects_due_articles_once(store: Store) -> None:
    setup(store)
    add_articles(store, article("draft.md", "Draft", NOW - timedelta(days=1), status="draft"),
                 article("later.md", "Later", NOW + timedelta(hours=1)),
                 article("sched.md", "Scheduled", NOW - timedelta(days=1), status="scheduled"))
    outbox = Outbox(store)
    edition, created = outbox.open_or_create(store.load_articles().values(), NOW, mid)
    assert created and edition is not None
    assert edition.id == 1 and edition.recipient_count == 3
    assert [i.title for i in edition.items] == [
        "Headline number 2", "Headline number 1", "Headline number 0"]  # newest first
    # While it is open, it is resumed, not recreated.
    again, created = outbox.open_or_create(store.load_articles().values(), NOW, mid)
    assert again == edition and not created
    # Done: the next edition carries only what is new by then.
    for d in outbox.claim(1, NOW, 10):
        outbox.mark_sent(d, NOW, 1)
    assert outbox.finish(1, NOW)
    assert outbox.open_or_create(store.load_articles().values(), NOW, mid) == (None, False)


def test_next_edition_carries_newly_due_article(store: Store) -> None:
    setup(store)
    add_articles(store, article("later.md", "Later", NOW + timedelta(hours=1)))
    outbox = Outbox(store)
    first, _ = outbox.open_or_create(store.load_articles().values(), NOW, mid)
    assert first is not None
    for d in outbox.claim(first.id, NOW, 10):
        outbox.mark_sent(d, NOW, 1)
    outbox.finish(first.id, NOW)
    second, created = outbox.open_or_create(store.load_articles().values(),
                                            NOW + timedelta(hours=2), mid)
    assert second is not None and created and second.id == 2
    assert [i.title for i in second.items] == ["Later"]


def test_no_articles_no_edition_unless_forced(store: Store) -> None:
    subscribe_many(store, [("a@example.org", None)], NOW, source="cli")
    outbox = Outbox(store)
    assert outbox.open_or_create([], NOW, mid) == (None, False)
    edition, created = outbox.open_or_create([], NOW, mid, force=True)
    assert created and edition is not None and edition.items == ()


def test_deliveries_have_stable_message_ids_and_claims_are_exclusive(store: Store) -> None:
    setup(store, recipients=5)
    a, b = Outbox(store, owner="host|ns|1|a"), Outbox(store, owner="host|ns|2|b")
    edition, _ = a.open_or_create(store.load_articles().values(), NOW, mid)
    assert edition is not None
    first = a.claim(edition.id, NOW, 3)
    second = b.claim(edition.id, NOW, 3)
    assert [d.recipient for d in first] == ["r000@example.org", "r001@example.org",
                                            "r002@example.org"]
    assert [d.recipient for d in second] == ["r003@example.org", "r004@example.org"]
    assert first[0].message_id == mid(edition.uid, "r000@example.org")
    assert b.claim(edition.id, NOW, 3) == []
    # Someone else cannot settle a claim it does not hold.
    assert not b.mark_sent(first[0], NOW, 1)
    assert a.mark_sent(first[0], NOW, 1)
    assert a.counts(edition.id)["sent"] == 1


def test_expired_claims_are_taken_over(store: Store) -> None:
    setup(store, recipients=2)
    a = Outbox(store, owner="elsewhere|ns|1|a", lease=timedelta(minutes=5))
    b = Outbox(store, owner="host|ns|2|b")
    edition, _ = a.open_or_create(store.load_articles().values(), NOW, mid)
    assert edition is not None
    assert len(a.claim(edition.id, NOW, 10)) == 2
    assert b.claim(edition.id, NOW + timedelta(minutes=4), 10) == []
    taken = b.claim(edition.id, NOW + timedelta(minutes=6), 10)
    assert len(taken) == 2


def test_claims_of_a_dead_local_process_are_taken_over_at_once(store: Store,
                                                               tmp_path: Path) -> None:
    setup(store, recipients=2)
    # A claimer that ran on this host and is gone: a finished child process.
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)
    dead_pid = int(child.stdout)
    from digest.store.owners import new_owner

    here = new_owner().rsplit("|", 2)[0]
    dead = Outbox(store, owner=f"{here}|{dead_pid}|dead")
    edition, _ = dead.open_or_create(store.load_articles().values(), NOW, mid)
    assert edition is not None
    assert len(dead.claim(edition.id, NOW, 10)) == 2
    assert len(Outbox(store).claim(edition.id, NOW, 10)) == 2


def test_deferred_deliveries_wait_and_unsubscribed_are_skipped(store: Store) -> None:
    setup(store, recipients=3)
    outbox = Outbox(store)
    edition, _ = outbox.open_or_create(store.load_articles().values(), NOW, mid)
    assert edition is not None
    unsubscribe(store, "r002@example.org", NOW)
    claimed = outbox.claim(edition.id, NOW, 10)
    assert [d.recipient for d in claimed] == ["r000@example.org", "r001@example.org"]
    assert outbox.counts(edition.id)["skipped"] == 1
    outbox.defer(claimed[0], NOW, 5, "451 later", NOW + timedelta(minutes=10))
    outbox.mark_failed(claimed[1], NOW, 1, "550 no such user")
    assert outbox.claim(edition.id, NOW + timedelta(minutes=9), 10) == []
    assert not outbox.finish(edition.id, NOW)
    again = outbox.claim(edition.id, NOW + timedelta(minutes=10), 10)
    assert [(d.recipient, d.attempts) for d in again] == [("r000@example.org", 5)]
    outbox.mark_sent(again[0], NOW, 1)
    assert outbox.finish(edition.id, NOW + timedelta(minutes=11))
    [summary] = history(store)
    assert (summary.id, summary.status, summary.sent, summary.failed, summary.skipped,
            summary.pending, summary.article_count) == (1, "done", 1, 1, 1, 0, 3)
    assert [(f.recipient, f.reply) for f in outbox.failures(1)] == [
        ("r001@example.org", "550 no such user")]


def test_release_returns_claims(store: Store) -> None:
    setup(store, recipients=3)
    outbox = Outbox(store)
    edition, _ = outbox.open_or_create(store.load_articles().values(), NOW, mid)
    assert edition is not None
    claimed = outbox.claim(edition.id, NOW, 10)
    assert outbox.release(claimed, NOW) == 3
    assert len(Outbox(store).claim(edition.id, NOW, 10)) == 3


def test_concurrent_creators_make_one_edition(database_url: str, tmp_path: Path) -> None:
    first = Store.open(database_url, tmp_path)
    try:
        setup(first, recipients=20, articles=5)
    finally:
        first.close()
    results: list[tuple[int | None, bool]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def create() -> None:
        own = Store.open(database_url, tmp_path)
        try:
            articles = list(own.load_articles().values())
            barrier.wait()
            edition, created = Outbox(own).open_or_create(articles, NOW, mid)
            results.append((edition.id if edition else None, created))
        except BaseException as exc:
            errors.append(exc)
        finally:
            own.close()

    threads = [threading.Thread(target=create) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(results) == [(1, False), (1, False), (1, False), (1, True)]
    check = Store.open(database_url, tmp_path)
    try:
        [summary] = history(check)
        assert summary.article_count == 5 and summary.recipient_count == 20
    finally:
        check.close()


def test_concurrent_claimers_never_share_a_delivery(database_url: str, tmp_path: Path) -> None:
    first = Store.open(database_url, tmp_path)
    try:
        setup(first, recipients=300)
        edition, _ = Outbox(first).open_or_create(first.load_articles().values(), NOW, mid)
        assert edition is not None
    finally:
        first.close()
    taken: list[list[str]] = [[], [], []]

    def work(index: int) -> None:
        own = Store.open(database_url, tmp_path)
        outbox = Outbox(own, owner=f"test|ns|{index}|x")
        try:
            while claimed := outbox.claim(1, NOW, 7):
                for d in claimed:
                    assert outbox.mark_sent(d, NOW, 1)
                    taken[index].append(d.recipient)
        finally:
            own.close()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everyone = [r for part in taken for r in part]
    assert len(everyone) == 300 and len(set(everyone)) == 300


def test_claims_of_a_killed_node_are_claimed_again_when_the_lease_runs_out(
        database_url: str, tmp_path: Path) -> None:
    """A node elsewhere (its host is not ours, so its PID tells nothing) claims a batch and
    is killed with SIGKILL: the rows stay claimed, in its name, until the lease runs out."""
    first = Store.open(database_url, tmp_path)
    try:
        setup(first, recipients=5)
        edition, _ = Outbox(first).open_or_create(first.load_articles().values(), NOW, mid)
        assert edition is not None
    finally:
        first.close()
    with subprocess.Popen([sys.executable, "-c", f"""
import os, signal, sys
from datetime import timedelta
from pathlib import Path
from digest.mail.outbox import Outbox
from digest.store.database import Store
from tests.fixtures_mail import NOW
store = Store.open({database_url!r}, Path({str(tmp_path)!r}))
outbox = Outbox(store, owner="far-host|ns|4242|node", lease=timedelta(minutes=5))
print(len(outbox.claim(1, NOW, 3)), flush=True)
signal.pause()
"""], stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2]) as node:
        try:
            assert node.stdout is not None and node.stdout.readline().strip() == "3"
        finally:
            node.kill()
    store = Store.open(database_url, tmp_path)
    try:
        survivor = Outbox(store, owner="host|ns|2|b")
        early = survivor.claim(1, NOW + timedelta(minutes=4), 10)
        assert [d.recipient for d in early] == ["r003@example.org", "r004@example.org"]
        later = survivor.claim(1, NOW + timedelta(minutes=6), 10)
        assert [d.recipient for d in later] == ["r000@example.org", "r001@example.org",
                                                "r002@example.org"]
        for d in early + later:
            assert survivor.mark_sent(d, NOW, 1)
        assert survivor.finish(1, NOW + timedelta(minutes=7))
    finally:
        store.close()


def test_batches_are_claimed_past_rows_another_node_is_claiming(database_url: str,
                                                                tmp_path: Path) -> None:
    """PostgreSQL: rows locked by a claim in progress are skipped, not waited for."""
    store = Store.open(database_url, tmp_path)
    try:
        setup(store, recipients=6)
        edition, _ = Outbox(store).open_or_create(store.load_articles().values(), NOW, mid)
        assert edition is not None
        if store.dialect != "postgresql":
            return  # SQLite: one writer at a time; the compare-and-set path covers it
        with store.engine.connect() as other:
            # Another node's claim, not yet committed, holds the first two rows.
            other.exec_driver_sql(
                "SELECT recipient FROM deliveries WHERE recipient IN "
                "('r000@example.org', 'r001@example.org') FOR UPDATE")
            found: list[list[str]] = []
            claimer = threading.Thread(target=lambda: found.append(
                [d.recipient for d in Outbox(store, owner="host|ns|2|b").claim(1, NOW, 3)]),
                daemon=True)
            claimer.start()
            claimer.join(10)  # a claim that waited for the lock would still be waiting
            other.rollback()
            claimer.join(10)
            assert found and found[0] == ["r002@example.org", "r003@example.org",
                                                      "r004@example.org"]
    finally:
        store.close()
