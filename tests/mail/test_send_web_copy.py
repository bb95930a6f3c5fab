"""`digest send` delivers nothing until the edition's web copy is online."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import digest_cli, write
from tests.fixtures_mail import SMTPServer, cli_project


def test_send_stops_before_any_message_when_the_page_cannot_be_written_then_resumes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        smtp_servers: Callable[..., SMTPServer]) -> None:
    env = cli_project(tmp_path, monkeypatch, articles=2)
    server = smtp_servers()
    env.update(server.env())
    write(tmp_path / "blocker", "a file where the output folder's parent should be")
    broken = {**env, "OUTPUT_DIR": str(tmp_path / "blocker" / "public")}
    assert digest_cli("subscribers", "add", "ann@example.org", cwd=tmp_path,
                      env=broken).returncode == 0

    result = digest_cli("send", cwd=tmp_path, env=broken)
    assert result.returncode != 0
    assert "blocker" in result.stderr and "Traceback" not in result.stderr
    assert server.received == []

    result = digest_cli("send", cwd=tmp_path, env=env)  # OUTPUT_DIR fixed: public/
    assert result.returncode == 0, result.stderr
    assert "edition 1 (resumed, 2 articles, 1 recipient): 1 sent" in result.stdout
    assert [m.rcpt_to for m in server.received] == ["ann@example.org"]
    page = (tmp_path / "public" / "digests" / "1.html").read_text(encoding="utf-8")
    assert "Headline number 0" in page and "Headline number 1" in page
    text = server.received[0].parsed().get_body(("plain",))
    assert text is not None
    assert "View it in your browser: https://news.example.org/digests/1.html" in \
        text.get_content()
