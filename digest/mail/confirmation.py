"""The double opt-in mail: asks a new address to confirm its subscription."""

from __future__ import annotations

from datetime import datetime

from digest.addresses import normalize_address
from digest.errors import MailError
from digest.mail.message import plain_message
from digest.mail.render import confirmation_subject, render_confirmation
from digest.mail.smtp import Mailer
from digest.settings import Settings


def send_confirmation(settings: Settings, mailer: Mailer, address: str, confirm_url: str,
                      now: datetime) -> None:
    """Mail `address` the double opt-in message asking it to open `confirm_url`.

    The text comes from confirm.txt (TEMPLATES_DIR first, then the built-in
    one). The caller owns `mailer` and closes it. Raises SubscriberError for
    an address that is not one, MailError for a link that is not an absolute
    http(s) URL, ConfigError without DIGEST_FROM, and what the mailer raises
    (TemporaryFailure, PermanentFailure, SMTPConfigError).
    """
    recipient = normalize_address(address, "confirmation address")
    if not confirm_url.startswith(("https://", "http://")) or any(
            c.isspace() or not c.isprintable() for c in confirm_url):
        raise MailError(f"the confirmation link {confirm_url!r} is not an absolute http(s) URL",
                        "build it with Settings.url(), e.g. settings.url('confirm?token=...')")
    text = render_confirmation(settings, recipient, confirm_url)
    mailer.send(plain_message(settings, recipient, confirmation_subject(settings), text, now))
