"""Subscriber list and address import, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from digest.addresses import normalize_address, read_address_file
from digest.errors import SubscriberError
from digest.mail.subscribers import (
    add_pending,
    confirm,
    count_by_status,
    forget,
    get_subscriber,
    list_subscribers,
    subscribe,
    subscribe_many,
    unsubscribe,
)
from digest.store.database import Store
from tests.conftest import base_env, digest_cli
from tests.fixtures_mail import NOW

LATER = NOW + timedelta(hours=1)


@pytest.mark.parametrize("raw, normal", [
    ("Ann@Example.ORG", "ann@example.org"),
    ("  bob.smith+news@mail.example.co.uk ", "bob.smith+news@mail.example.co.uk"),
    ("jörg@bücher.example", None),
    ("x@bücher.example", "x@xn--bcher-kva.example"),
])
def test_normalize(raw: str, normal: str | None) -> None:
    if normal is None:
        with pytest.raises(SubscriberError, match="ASCII"):
            normalize_address(raw)
    else:
        assert normalize_address(raw) == normal


@pytest.mark.parametrize("bad", ["", "ann", "ann@", "@example.org", "a@b@example.org",
                                 "ann@example", "ann..x@example.org", ".ann@example.org",
                                 "ann@-example.org", "ann@exa mple.org", "ann\r\n@example.org",
                                 "ann@example.org\nBcc: x@y.org", "ann@example.123"])
def test_invalid_addresses(bad: str) -> None:
    with pytest.raises(SubscriberError, match="line 7"):
        normalize_address(bad, "list.txt line 7")


def test_subscribe_statuses(store: Store) -> None:
    assert subscribe(store, "Ann@example.org", NOW) == "added"
    assert subscribe(store, "ann@example.org", LATER) == "unchanged"
    assert unsubscribe(store, "ann@example.org", LATER) is True
    assert unsubscribe(store, "ann@example.org", LATER) is False
    assert subscribe(store, "ann@example.org", LATER) == "kept-unsubscribed"
    assert subscribe(store, "ann@example.org", LATER, resubscribe=True) == "subscribed"
    row = get_subscriber(store, "ANN@example.org")
    assert row is not None and row.status == "subscribed" and row.created_at == NOW
    assert row.updated_at == LATER


def test_unknown_unsubscribe_is_remembered(store: Store) -> None:
    assert unsubscribe(store, "gone@example.org", NOW) is False
    assert subscribe(store, "gone@example.org", NOW) == "kept-unsubscribed"


def test_double_opt_in(store: Store) -> None:
    assert add_pending(store, "new@example.org", NOW) is True
    assert count_by_status(store) == {"subscribed": 0, "pending": 1, "unsubscribed": 0,
                                      "bounced": 0}
    assert add_pending(store, "new@example.org", NOW) is True  # asks again: send again
    assert confirm(store, "new@example.org", LATER) is True
    assert add_pending(store, "new@example.org", NOW) is False  # already subscribed
    # An unsubscribed address may sign up again, but only a confirmation subscribes it.
    unsubscribe(store, "new@example.org", LATER)
    assert confirm(store, "new@example.org", LATER) is False
    assert add_pending(store, "new@example.org", LATER) is True
    assert confirm(store, "new@example.org", LATER) is True
    assert confirm(store, "never@example.org", LATER) is False


def test_bulk_subscribe_and_duplicates(store: Store) -> None:
    unsubscribe(store, "left@example.org", NOW)
    add_pending(store, "pending@example.org", NOW)
    report = subscribe_many(store, [("a@example.org", "Ann"), ("A@example.org", None),
                                    ("left@example.org", None), ("pending@example.org", None),
                                    ("b@example.org", "Bö B")], NOW, source="import")
    assert report.added == ("a@example.org", "b@example.org")
    assert report.unchanged == ("a@example.org",)
    assert report.kept_unsubscribed == ("left@example.org",)
    assert report.subscribed == ("pending@example.org",)
    listed = {s.address: (s.status, s.name) for s in list_subscribers(store)}
    assert listed["b@example.org"] == ("subscribed", "Bö B")
    assert listed["left@example.org"][0] == "unsubscribed"
    assert [s.address for s in list_subscribers(store, "subscribed")] == [
        "a@example.org", "b@example.org", "pending@example.org"]


def test_forget(store: Store) -> None:
    subscribe(store, "typo@exmaple.org", NOW)
    assert forget(store, "typo@exmaple.org") is True
    assert forget(store, "typo@exmaple.org") is False
    assert get_subscriber(store, "typo@exmaple.org") is None


def test_large_bulk_import(store: Store) -> None:
    entries = [(f"user{i}@example.org", None) for i in range(1500)]
    report = subscribe_many(store, entries, NOW, source="import")
    assert len(report.added) == 1500
    again = subscribe_many(store, entries, NOW, source="import")
    assert len(again.unchanged) == 1500


# -- import files ----------------------------------------------------------------------------


def test_read_plain_list(tmp_path: Path) -> None:
    path = tmp_path / "list.txt"
    path.write_text("# subscribers\nann@example.org\n\nBob <BOB@example.org>\n", "utf-8")
    lines = read_address_file(path)
    assert [(x.line, x.address, x.name) for x in lines] == [
        (2, "ann@example.org", None), (4, "bob@example.org", "Bob")]


def test_read_csv_with_email_column(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text('name,Email,joined\n"Smith, Ann",ann@example.org,2020\n'
                    'Bob,bob@example.org,2021\n', "utf-8-sig")
    lines = read_address_file(path)
    assert [(x.line, x.address, x.name) for x in lines] == [
        (2, "ann@example.org", "Smith, Ann"), (3, "bob@example.org", "Bob")]


def test_read_csv_first_column_semicolons(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text("ann@example.org;x\nbob@example.org;y\n", "utf-8")
    assert [x.address for x in read_address_file(path)] == ["ann@example.org",
                                                            "bob@example.org"]


def test_bad_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text("email\nann@example.org\nnot-an-address\n", "utf-8")
    with pytest.raises(SubscriberError, match=r"export\.csv line 3: 'not-an-address'"):
        read_address_file(path)


def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes("jörg@example.org\n".encode("latin-1"))
    with pytest.raises(SubscriberError, match="UTF-8"):
        read_address_file(path)


def test_cli_add_changes_only_the_choice_given(tmp_path: Path, database_url: str) -> None:
    """`subscribers add --cadence` on someone on the list keeps their topics, and `--topics`
    their cadence; a new address gets the default of the one not given."""
    env = {**base_env(tmp_path), "DATABASE_URL": database_url}

    def add(*args: str) -> None:
        done = digest_cli("subscribers", "add", *args, cwd=tmp_path, env=env)
        assert done.returncode == 0, done.stderr

    def listed() -> dict[str, tuple[tuple[str, ...], str]]:
        store = Store.open(database_url, tmp_path)
        try:
            return {s.address: (s.topics, str(s.cadence)) for s in list_subscribers(store)}
        finally:
            store.close()

    add("ann@example.org", "--topics", "Python, Plain Text")
    said = digest_cli("subscribers", "add", "ann@example.org", "--cadence", "weekly",
                      cwd=tmp_path, env=env)
    assert "cadence set for 1 address already on the list" in said.stdout
    assert listed()["ann@example.org"] == (("plain-text", "python"), "weekly")
    add("ann@example.org", "bob@example.org", "--topics", "meta")
    assert listed() == {"ann@example.org": (("meta",), "weekly"),
                        "bob@example.org": (("meta",), "every")}
    add("bob@example.org", "--cadence", "weekly", "--topics", "")
    assert listed()["bob@example.org"] == ((), "weekly")  # both given: both set
