"""The welcome mail: sent once an address is subscribed.

After a confirmed web sign-up (:class:`digest.web.signup.Signup`), and by
`digest subscribers add --welcome` / `import --welcome`. Text and HTML from
``welcome.txt`` and ``welcome.html`` (TEMPLATES_DIR first, then the built-in
ones) with the latest WELCOME_ARTICLES articles, the signed "manage your
subscription" link and a signed one-click unsubscribe link (List-Unsubscribe, RFC 8058) as in the digest.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from email.message import EmailMessage
from typing import Any

from digest.addresses import normalize_address
from digest.headers import set_mailbox, set_text
from digest.mail.message import POLICY, OutgoingMessage, list_unsubscribe, sender_address, sender_domain
from digest.mail.personal import manage_url, unsubscribe_url
from digest.mail.render import inline_css, normal_newlines, one_line, plain_block
from digest.mail.smtp import Mailer
from digest.model import article_path
from digest.settings import Settings
from digest.store.database import Store
from digest.templates import environment, render

TEXT_TEMPLATE = "welcome.txt"
HTML_TEMPLATE = "welcome.html"
WELCOME_ARTICLES = 5


def welcome_message(settings: Settings, store: Store, address: str, now: datetime
                    ) -> OutgoingMessage:
    """The welcome mail to `address` (normalised here), with the latest articles."""
    recipient = normalize_address(address, "welcome address")
    zone = settings.digest_timezone
    articles: list[dict[str, Any]] = [
        {"title": one_line(a.title), "url": settings.url(article_path(a.slug)),
         "summary": plain_block(a.summary),
         "date": a.published.astimezone(zone).date().isoformat()}
        for a in store.latest_articles(WELCOME_ARTICLES, now)]
    link = unsubscribe_url(settings, recipient, now)
    context = {"site": {"title": one_line(settings.site_title), "url": settings.site_url},
               "address": recipient, "articles": articles, "unsubscribe_url": link,
               "manage_url": manage_url(settings, recipient, now)}
    env = environment(settings.templates_dir)
    text = normal_newlines(render(env, TEXT_TEMPLATE, context))
    html = inline_css(render(env, HTML_TEMPLATE, context), HTML_TEMPLATE)

    msg_id = f"<welcome.{uuid.uuid4().hex}@{sender_domain(settings)}>"
    message = EmailMessage(policy=POLICY)
    mailbox = settings.digest_from
    assert mailbox is not None  # sender_domain() raised ConfigError otherwise
    set_mailbox(message, "From", mailbox.display_name, mailbox.address)
    message["To"] = recipient
    set_text(message, "Subject", f"Welcome to {one_line(settings.site_title)}")
    message["Date"] = now
    message.set_raw("Message-ID", msg_id)
    message.set_raw("Auto-Submitted", "auto-generated")
    message.set_raw("List-Unsubscribe", list_unsubscribe(link, settings.unsubscribe_mailto))
    message.set_raw("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")
    message.set_content(text, cte="quoted-printable")
    message.add_alternative(html, subtype="html", cte="quoted-printable")
    return OutgoingMessage(sender_address(settings), recipient, msg_id,
                           message.as_bytes(policy=POLICY))


def send_welcome(settings: Settings, store: Store, mailer: Mailer, address: str,
                 now: datetime) -> None:
    """Build and send the welcome mail; the caller owns `mailer` and closes it."""
    mailer.send(welcome_message(settings, store, address, now))
