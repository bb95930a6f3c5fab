"""The confirmation mail of a web sign-up (double opt-in), built and sent.

A stand-in for ``digest.send.send_confirmation`` (being written on another
branch) with the same signature; the sign-up uses whichever is available.
The body is the template ``signup_confirm.txt`` (override it in
TEMPLATES_DIR); the subject is fixed.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import make_msgid, parseaddr

from digest.mail_message import POLICY, OutgoingMessage, sender_address, sender_domain
from digest.mail_render import one_line
from digest.mailer import Mailer
from digest.settings import Settings
from digest.templates import environment, render

TEMPLATE = "signup_confirm.txt"
CONFIRM_MAX_AGE = timedelta(days=3)


def confirmation_message(settings: Settings, address: str, confirm_url: str,
                         now: datetime) -> OutgoingMessage:
    """The confirmation mail to `address` (text only, UTF-8)."""
    sender = sender_address(settings)  # ConfigError without DIGEST_FROM
    body = render(environment(settings.templates_dir), TEMPLATE, {
        "site": {"title": settings.site_title, "url": settings.site_url},
        "address": address, "confirm_url": confirm_url,
        "valid_days": max(1, CONFIRM_MAX_AGE.days),
    })
    message = EmailMessage(policy=POLICY)
    name, _ = parseaddr(settings.digest_from or "")
    message["From"] = Address(display_name=one_line(name), addr_spec=sender)
    message["To"] = address
    message["Subject"] = f"Confirm your subscription to {one_line(settings.site_title)}"
    message["Date"] = now
    msg_id = make_msgid("confirm", domain=sender_domain(settings))
    message["Message-ID"] = msg_id
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies, please
    message.set_content(body, cte="quoted-printable")
    return OutgoingMessage(sender, address, msg_id, message.as_bytes(policy=POLICY))


def send_confirmation(settings: Settings, mailer: Mailer, address: str, confirm_url: str,
                      now: datetime) -> None:
    """Mail the confirmation link; raises what Mailer.send raises."""
    mailer.send(confirmation_message(settings, address, confirm_url, now))
