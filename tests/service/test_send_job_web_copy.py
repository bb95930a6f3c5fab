"""The scheduled send puts the edition's web copy online before its first message."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from aiosmtpd.smtp import Envelope

from digest.mail.subscribers import subscribe_many
from digest.publish.build import publish
from digest.service.jobs import JobContext, send_job
from digest.store.database import Store
from tests.conftest import REPO, make_settings
from tests.fixtures_mail import Behaviour, SMTPServer

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


def test_send_job_writes_the_digest_page_before_delivering(
        tmp_path: Path, smtp_servers: Callable[..., SMTPServer]) -> None:
    shutil.copytree(REPO / "articles", tmp_path / "articles")
    page = tmp_path / "public" / "digests" / "1.html"
    seen: list[bool] = []

    def look(envelope: Envelope) -> None:
        seen.append(page.is_file())

    smtp = smtp_servers(behaviour=Behaviour(on_data=look))
    settings = make_settings(tmp_path, **smtp.env())
    store = Store.open(settings.database_url, tmp_path)
    try:
        publish(settings, store, NOW)
        assert not page.exists()
        subscribe_many(store, [("reader@example.org", None)], NOW, source="cli")
        result = send_job(JobContext(settings, store, NOW, lambda: False))
    finally:
        store.close()
    assert result.outcome == "ok", result.summary
    assert seen == [True]
    assert "Welcome to digest" in page.read_text(encoding="utf-8")
