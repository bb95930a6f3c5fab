"""The double opt-in mail: send_confirmation against a real SMTP server (aiosmtpd)."""

from __future__ import annotations

from collections.abc import Callable
from email import message_from_bytes, policy
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest

from digest.errors import ConfigError, MailError, SubscriberError
from digest.mail.confirmation import send_confirmation
from digest.mail.smtp import MemoryMailer, SMTPMailer
from tests.conftest import make_settings
from tests.fixtures_mail import NOW, SMTPServer

LINK = "https://news.example.org/confirm?token=" + "t" * 90  # longer than a line


def test_confirmation_mail_over_smtp(tmp_path: Path,
                                     smtp_servers: Callable[..., SMTPServer]) -> None:
    server = smtp_servers()
    settings = make_settings(tmp_path, **server.env(), SITE_TITLE="Café News")
    mailer = SMTPMailer(settings)
    try:
        send_confirmation(settings, mailer, " Ann@Example.ORG ", LINK, NOW)
    finally:
        mailer.close()
    [received] = server.received
    # The address is normalised as subscriber addresses are.
    assert (received.mail_from, received.rcpt_to) == ("news@example.org", "ann@example.org")
    message = received.parsed()
    assert message["To"] == "ann@example.org"
    assert message["From"].addresses[0].addr_spec == "news@example.org"
    assert message["Subject"] == "Confirm your subscription to Café News"
    assert parsedate_to_datetime(message["Date"]) == NOW
    assert received.message_id.startswith("<confirm.")
    assert received.message_id.endswith("@example.org>")
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["List-Unsubscribe"] is None
    assert message.get_content_type() == "text/plain"
    body = message.get_content()
    assert LINK in body.splitlines()  # whole, on its own line, after decoding
    assert "Please confirm your subscription to Café News." in body
    assert "ann@example.org" in body
    assert all(len(line) <= 78 for line in received.data.split(b"\r\n"))


def test_each_confirmation_has_its_own_message_id(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    mailer = MemoryMailer()
    send_confirmation(settings, mailer, "ann@example.org", LINK, NOW)
    send_confirmation(settings, mailer, "ann@example.org", LINK, NOW)
    first, second = mailer.sent
    assert first.message_id != second.message_id


def test_user_template_overrides_the_builtin(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "confirm.txt").write_text(
        "Hallo {{ address }}, bitte bestätigen: {{ confirm_url }} ({{ site.title }})\n", "utf-8")
    settings = make_settings(tmp_path)
    mailer = MemoryMailer()
    send_confirmation(settings, mailer, "ann@example.org", "https://x.example/c?t=1", NOW)
    [sent] = mailer.sent
    body = message_from_bytes(sent.data, policy=policy.default).get_content()
    assert body.replace("\r\n", "\n") == "Hallo ann@example.org, bitte bestätigen: https://x.example/c?t=1 " \
                   "(Example News)\n"


def test_bad_input_is_refused_before_sending(tmp_path: Path) -> None:
    mailer = MemoryMailer()
    settings = make_settings(tmp_path)
    with pytest.raises(SubscriberError, match="confirmation address"):
        send_confirmation(settings, mailer, "not an address", LINK, NOW)
    with pytest.raises(MailError, match="absolute http"):
        send_confirmation(settings, mailer, "ann@example.org", "/confirm?token=x", NOW)
    with pytest.raises(MailError, match="absolute http"):
        send_confirmation(settings, mailer, "ann@example.org", LINK + "\r\nBcc: x", NOW)
    with pytest.raises(ConfigError, match="DIGEST_FROM"):
        send_confirmation(make_settings(tmp_path, DIGEST_FROM=""), mailer,
                          "ann@example.org", LINK, NOW)
    assert mailer.sent == []
