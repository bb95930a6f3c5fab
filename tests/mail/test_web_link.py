"""The mail's "view in browser" link (``web_url``) leads to a page that exists.

A real send puts the edition's web copy online before its first message, so
its messages link it; `digest preview`, `digest send --dry-run` and `digest send
--to` show the next edition, which is not made and has no page: no link.
Through the CLI as a user runs it, in its own process, over a real SMTP server.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

from tests.conftest import REPO, digest_cli
from tests.fixtures_mail import SMTPServer

SITE_URL = "https://example.org/news/"
VIEW_TEXT = "View it in your browser"
VIEW_HTML = "View this digest in your browser"


def bodies(message: EmailMessage) -> tuple[str, str]:
    """The text and HTML parts, decoded."""
    text, html = message.get_body(("plain",)), message.get_body(("html",))
    assert text is not None and html is not None
    return text.get_content(), html.get_content()


def parse(data: bytes) -> EmailMessage:
    parsed = message_from_bytes(data, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def assert_no_web_link(text: str, html: str) -> None:
    for body in (text, html):
        assert "digests/" not in body
    assert VIEW_TEXT not in text and VIEW_HTML not in html


def test_only_real_sends_link_the_web_copy(tmp_path: Path,
                                           smtp_servers: Callable[..., SMTPServer]) -> None:
    server = smtp_servers()
    shutil.copytree(REPO / "articles", tmp_path / "articles")
    env = {"SECRET_KEY": "k" * 32, "DIGEST_FROM": "News <news@example.org>",
           "BASE_URL": SITE_URL, "DIGEST_RECIPIENTS": "ann@example.org", **server.env()}

    def cli(*args: str) -> str:
        done = digest_cli(*args, cwd=tmp_path, env=env)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done.stdout

    cli("publish")
    out = tmp_path / "public"
    page = out / "digests" / "1.html"

    preview = tmp_path / "preview.html"
    cli("preview", "--out", str(preview))
    html = preview.read_text("utf-8")
    assert "you@example.org" in html  # the digest of the next edition, as a recipient sees it
    assert "digests/" not in html and VIEW_HTML not in html

    cli("send", "--dry-run", "--out", str(tmp_path / "eml"))
    (eml,) = (tmp_path / "eml").iterdir()
    assert_no_web_link(*bodies(parse(eml.read_bytes())))
    shown = cli("send", "--dry-run")
    assert "To: ann@example.org" in shown and "digests/" not in shown  # the MIME text shown

    cli("send", "--to", "tester@example.org")
    (test,) = server.received
    assert test.rcpt_to == "tester@example.org"
    assert_no_web_link(*bodies(test.parsed()))
    assert not page.exists()

    cli("send")
    real = server.received[1]
    assert real.rcpt_to == "ann@example.org"
    text, html = bodies(real.parsed())
    link = f"{SITE_URL}digests/1.html"
    assert f"{VIEW_TEXT}: {link}" in text
    assert f'<a href="{link}"' in html and VIEW_HTML in html
    assert page.is_file()  # online before the message went out
    assert "digests/2.html" not in text + html

    # The next edition is a preview again: its page does not exist, nor a link to it.
    cli("send", "--to", "tester@example.org", "--force")  # nothing new: only forced
    assert_no_web_link(*bodies(server.received[2].parsed()))
    assert not (out / "digests" / "2.html").exists()
