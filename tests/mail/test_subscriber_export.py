"""`digest subscribers export` writes what `subscribers import` reads back."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digest.addresses import clean_name
from digest.errors import SubscriberError
from digest.mail.subscriber_csv import HEADER, Row, read_subscriber_file, write_csv
from digest.mail.subscribers import list_subscribers, subscribe_many, unsubscribe
from digest.model import Cadence, SubscriberStatus
from digest.store.database import Store
from digest.store.subscribers import Choices, Subscriber, hard_bounce
from tests.conftest import base_env, digest_cli
from tests.fixtures_mail import NOW


def rows_of(store: Store) -> list[tuple[str, str | None, str, tuple[str, ...], str]]:
    return [(s.address, s.name, str(s.status), s.topics, str(s.cadence))
            for s in list_subscribers(store)]


def test_cli_export_import_round_trip(tmp_path: Path, database_url: str) -> None:
    """Through the CLI: export from one store, import into an empty one, same list."""
    env = {**base_env(tmp_path), "DATABASE_URL": database_url}
    odd = 'Zoë "Z" O\'Brien, =SUM(A1); -x'
    source = Store.open(database_url, tmp_path)
    try:
        subscribe_many(source, [("ann@example.org", "Ann"), ("bob@example.org", odd),
                                ("=cal@example.org", None), ("dan@example.org", "Dan")], NOW,
                       source="cli")
        unsubscribe(source, "dan@example.org", NOW)
        with source.transaction() as conn:  # a bounced one, as a send would leave it
            hard_bounce(conn, "ann@example.org", NOW, "550 5.1.1 user unknown")
    finally:
        source.close()
    result = digest_cli("subscribers", "add", "bob@example.org", "--topics", "Python, Plain Text",
                        "--cadence", "weekly", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "1 already subscribed" in result.stdout
    source = Store.open(database_url, tmp_path)
    try:
        expected = rows_of(source)
    finally:
        source.close()
    assert ("bob@example.org", odd, "subscribed", ("plain-text", "python"), "weekly") in expected
    out = tmp_path / "list.csv"
    result = digest_cli("subscribers", "export", "--out", str(out), cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "4 exported" in result.stderr
    lines = out.read_text("utf-8").splitlines()
    assert lines[0] == HEADER
    assert lines[1].startswith("'=cal@example.org,,subscribed,,every,2024-05-06T07:00:00+00:00,0")
    assert any(line.startswith("ann@example.org,Ann,bounced,,every,") and line.endswith(",1")
               for line in lines)
    result = digest_cli("subscribers", "export", "--status", "unsubscribed", cwd=tmp_path,
                        env=env)
    assert result.stdout.splitlines()[1:] == [
        "dan@example.org,Dan,unsubscribed,,every,2024-05-06T07:00:00+00:00,0"]

    other = tmp_path / "other"
    other.mkdir()
    other_url = f"sqlite:///{other / 'state.sqlite3'}"
    result = digest_cli("subscribers", "import", str(out), cwd=other,
                        env={**env, "DATABASE_URL": other_url})
    assert result.returncode == 0, result.stderr
    assert "2 added" in result.stdout and "2 recorded as unsubscribed or bounced" in result.stdout
    copy = Store.open(other_url, other)
    try:
        assert rows_of(copy) == expected
    finally:
        copy.close()
    # Importing it again into the first store changes nothing, resubscribes no one.
    result = digest_cli("subscribers", "import", str(out), cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    again = Store.open(database_url, tmp_path)
    try:
        assert rows_of(again) == expected
    finally:
        again.close()


def test_a_broken_export_file_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_text(HEADER + "\nann@example.org,Ann,gone,,every,,0\n", "utf-8")
    with pytest.raises(SubscriberError, match="line 2: unknown status 'gone'"):
        read_subscriber_file(path)
    path.write_text(HEADER + "\nann@example.org,Ann\n", "utf-8")
    with pytest.raises(SubscriberError, match="line 2: 2 columns, not 7"):
        read_subscriber_file(path)


names = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(names, min_size=1, max_size=5),
       st.sampled_from(list(SubscriberStatus)),
       st.lists(st.from_regex(r"[a-z0-9]{1,8}(-[a-z0-9]{1,8}){0,2}", fullmatch=True),
                max_size=4, unique=True).map(lambda t: tuple(sorted(t))),
       st.sampled_from(list(Cadence)))
def test_any_names_survive_export_and_import(tmp_path: Path, given_names: list[str],
                                             status: SubscriberStatus, topics: tuple[str, ...],
                                             cadence: Cadence) -> None:
    people = [Subscriber(f"p{i}@example.org", clean_name(name), status, "cli", NOW, NOW, i,
                         topics=topics, cadence=cadence)
              for i, name in enumerate(given_names)]
    out = io.StringIO()
    assert write_csv(people, out) == len(people)
    path = tmp_path / "list.csv"
    path.write_bytes(out.getvalue().encode("utf-8"))
    # clean_name keeps names on one line: row i is on line i + 2.
    assert read_subscriber_file(path) == [
        Row(i + 2, p.address, p.name, status, Choices(topics, cadence))
        for i, p in enumerate(people)]
    # No cell a spreadsheet would run as a formula.
    for row in csv.reader(io.StringIO(out.getvalue(), newline="")):
        assert not any(cell.startswith(("=", "+", "-", "@")) for cell in row)
