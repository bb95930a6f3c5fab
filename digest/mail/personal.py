"""What differs per recipient in a digest: the signed unsubscribe and manage links,
and the :class:`~digest.mail.message.Personal` values a message is built from."""

from __future__ import annotations

from datetime import datetime

from digest.mail.message import Personal
from digest.mail.tokens import PURPOSE_MANAGE, PURPOSE_UNSUBSCRIBE, make_token
from digest.model import Edition
from digest.settings import Settings


def unsubscribe_url(settings: Settings, address: str, issued_at: datetime) -> str:
    secret = settings.secret_key or ""
    return settings.url("unsubscribe?token=" +
                        make_token(secret, PURPOSE_UNSUBSCRIBE, address, issued_at))


def manage_url(settings: Settings, address: str, issued_at: datetime) -> str:
    """The signed "manage your subscription" link (topics, cadence); no age limit."""
    secret = settings.secret_key or ""
    return settings.url("manage?token=" + make_token(secret, PURPOSE_MANAGE, address, issued_at))


def personal(settings: Settings, edition: Edition, address: str, name: str | None,
             msg_id: str, date: datetime) -> Personal:
    return Personal(address=address, name=name, message_id=msg_id,
                    unsubscribe_url=unsubscribe_url(settings, address, edition.created_at),
                    date=date, manage_url=manage_url(settings, address, edition.created_at))
