"""Resumer: between scheduled sends, `digest run` sends what an open edition still owes,
and backs off while the SMTP relay stays unreachable."""

from __future__ import annotations

import logging
import re
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from digest.mail.run import RetryPolicy
from digest.mail.send import send_digest
from digest.mail.smtp import SMTPMailer
from digest.mail.subscribers import subscribe_many
from digest.service.resume import Resumer
from digest.store.database import Store
from digest.store.edition_reports import history
from tests.conftest import make_settings, wait_for
from tests.fixtures_mail import NOW, add_articles, free_port, sample_articles


def clock() -> datetime:
    return datetime.now(UTC)


def test_a_resume_against_an_unreachable_relay_backs_off(
        tmp_path: Path, store: Store, caplog: pytest.LogCaptureFixture) -> None:
    settings = make_settings(tmp_path, SMTP_PORT=str(free_port()), SMTP_CONNECTIONS="1")
    add_articles(store, *sample_articles(2))
    subscribe_many(store, [(f"r{i}@example.org", None) for i in range(30)], NOW, source="cli")
    report = send_digest(settings, store, lambda: SMTPMailer(settings), clock(),
                         should_stop=lambda: True)  # an edition made, nothing sent yet
    assert report.edition == 1 and report.sent == 0
    stop = threading.Event()
    resumer = Resumer(settings, store, clock, stop, lambda: SMTPMailer(settings),
                      every=0.05, first_pause=0.2, retry=RetryPolicy(attempts=1))
    with caplog.at_level(logging.ERROR, logger="digest.schedule"):
        resumer.start()
        try:
            wait_for(lambda: caplog.text.count("resume-send failed") >= 3,
                     "three failed resumes", 60)
        finally:
            stop.set()
            resumer.join()
    pauses = re.findall(r"trying again in ([\d.]+) s", caplog.text)
    assert [float(p) for p in pauses[:3]] == [0.2, 0.4, 0.8]  # not every 0.05 s
    assert "cannot connect to the SMTP server 127.0.0.1:" in caplog.text
    (edition,) = history(store)
    assert edition.sent == 0 and edition.status != "done"
