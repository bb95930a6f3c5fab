"""Precedence: bulk and Feedback-ID on digest mail: as sent over SMTP, configurable, safe."""

from __future__ import annotations

import string
from collections.abc import Callable
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digest.errors import ConfigError
from digest.mail.message import MessageFactory, Personal
from digest.mail.render import DigestContent, render_digest
from digest.mail.send import send_digest
from digest.mail.smtp import SMTPMailer
from digest.mail.subscribers import subscribe_many
from digest.store.database import Store
from tests.conftest import make_settings
from tests.fixtures_mail import NOW, SMTPServer, add_articles, sample_articles

Start = Callable[..., SMTPServer]


def test_sent_digest_carries_precedence_and_one_feedback_id_per_edition(
        tmp_path: Path, sqlite_store: Store, smtp_servers: Start) -> None:
    server = smtp_servers()
    settings = make_settings(tmp_path, **server.env())
    add_articles(sqlite_store, *sample_articles(2))
    subscribe_many(sqlite_store, [("a@example.org", None), ("b@example.org", None)], NOW,
                   source="cli")
    report = send_digest(settings, sqlite_store, lambda: SMTPMailer(settings), NOW)
    assert report.sent == 2
    for received in server.received:
        message = received.parsed()
        assert message["Precedence"] == "bulk"
        assert message["Feedback-ID"] == "1:digest:news.example.org"


def build_head(tmp_path: Path, **values: str) -> str:
    config = make_settings(tmp_path, **values)
    rendered = render_digest(config, DigestContent(3, NOW, ()))
    factory = MessageFactory(config, rendered, "ed1234", 3)
    data = factory.build(Personal("r@example.org", None, "<m@example.org>",
                                  "https://news.example.org/u", NOW)).data
    return data.split(b"\r\n\r\n", 1)[0].decode("ascii")


def test_feedback_id_is_configurable_and_can_be_left_out(tmp_path: Path) -> None:
    head = build_head(tmp_path, FEEDBACK_ID="{edition}:weekly:{host}:acme")
    assert "\r\nFeedback-ID: 3:weekly:news.example.org:acme\r\n" in head
    head = build_head(tmp_path, FEEDBACK_ID="")
    assert "Feedback-ID" not in head
    assert "\r\nPrecedence: bulk\r\n" in head


@pytest.mark.parametrize("value", ["a b", "{site}:x", "caf\u00e9", "x{", "{edition!r}",
                                   "{edition:>9}", "x" * 201, "a\tb", "a\r\nBcc: x@y.z"])
def test_bad_feedback_id_is_refused_at_start(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        make_settings(tmp_path, FEEDBACK_ID=value)
    assert "FEEDBACK_ID" in caught.value.message
    assert caught.value.hint


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=st.sampled_from(string.printable + "\u00e9{}\x00\u2028"), max_size=220))
def test_any_accepted_feedback_id_is_one_header_that_reads_back(tmp_path: Path,
                                                                 value: str) -> None:
    try:
        make_settings(tmp_path, FEEDBACK_ID=value)
    except ConfigError:
        return
    head = build_head(tmp_path, FEEDBACK_ID=value)
    assert all(len(line) <= 998 for line in head.split("\r\n"))
    message = message_from_bytes(head.encode() + b"\r\n\r\n", policy=policy.default)
    expected = value.strip().format(edition=3, host="news.example.org")
    assert message.get_all("Feedback-ID", []) == ([expected] if expected else [])
    assert message["To"] == "r@example.org"
