"""Build the digest mail: one ``multipart/alternative`` message per recipient.

:class:`MessageFactory` asks the standard library's ``email`` package (SMTP
policy: CRLF, folding, RFC 2047 for non-ASCII From and Subject) for the
message once per edition, with placeholder words where the personal parts
go, and splits the bytes at those words. For each recipient it then only
joins bytes: the personal header lines (To, Date, Message-ID,
List-Unsubscribe: all ASCII, validated or made here) and the two bodies with
the address and unsubscribe link filled in, quoted-printable encoded by
``binascii``. :meth:`MessageFactory.email_message` builds the same message
entirely with the ``email`` package (slow; used by tests to check the fast
path and for display).

Headers whose form mail clients depend on (List-Id, List-Unsubscribe,
List-Unsubscribe-Post, Message-ID, Precedence, Feedback-ID) are written raw and never refolded or
RFC 2047-encoded: a client cannot read an encoded List-Unsubscribe URL
(only List-Id's title phrase may be, folded by :mod:`digest.mail_headers`).
"""

from __future__ import annotations

import binascii
import hashlib
import html
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from email import policy as email_policy
from email.message import EmailMessage
from email.utils import format_datetime
from typing import NoReturn
from urllib.parse import quote, urlsplit

from digest.errors import ConfigError
from digest.headers import list_id_value, mailbox_value, set_mailbox, set_text, token_value
from digest.mail import verp
from digest.mail.render import (
    MANAGE_SLOT,
    RECIPIENT_SLOT,
    UNSUBSCRIBE_SLOT,
    RenderedDigest,
    one_line,
)
from digest.settings import Settings

# SMTP policy (CRLF, 78-column folding) that leaves raw headers as we fold them.
POLICY = email_policy.SMTP.clone(refold_source="none")

_PERSONAL = "X-Digest-Personal"
_TEXT_TOKEN = "zzdigesttextbodyzz"  # noqa: S105 (a placeholder, not a secret)
_HTML_TOKEN = "zzdigesthtmlbodyzz"  # noqa: S105
_SAFE_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~ -]*$")


@dataclass(frozen=True)
class Personal:
    """What differs from one recipient to the next."""

    address: str  # normalised (ASCII) address
    name: str | None
    message_id: str  # with angle brackets
    unsubscribe_url: str
    date: datetime
    manage_url: str = ""  # the "manage your subscription" link


@dataclass(frozen=True)
class OutgoingMessage:
    """A message ready for SMTP: envelope and the bytes (CRLF line ends)."""

    sender: str
    recipient: str
    message_id: str
    data: bytes


def message_id(edition_uid: str, address: str, domain: str) -> str:
    """The stable Message-ID of (edition, recipient): a resend can be recognised."""
    digest = hashlib.sha256(f"{edition_uid}\x00{address}".encode()).hexdigest()[:24]
    return f"<digest.{edition_uid}.{digest}@{domain}>"


def sender_address(settings: Settings) -> str:
    """The envelope sender: the address part of DIGEST_FROM."""
    if not settings.digest_from:
        raise ConfigError("DIGEST_FROM is not set; it is needed to send the digest",
                          "add DIGEST_FROM=News <news@example.org> to .env")
    return settings.digest_from.address


def sender_domain(settings: Settings) -> str:
    return sender_address(settings).rsplit("@", 1)[1].lower()


def list_id(settings: Settings) -> str:
    """RFC 2919 List-Id value: the site title as phrase, digest.<site host> as id (folded)."""
    host = (urlsplit(settings.site_url).hostname or "localhost").lower()
    return list_id_value(one_line(settings.site_title), f"digest.{host}")


def feedback_id(settings: Settings, edition: int | None) -> str | None:
    """The Feedback-ID value (FEEDBACK_ID with {edition} and {host}); None when empty.

    Large mailbox providers group complaints by it (Gmail's feedback loop reads
    up to four colon-separated fields, the last naming the sender): one value
    per edition, never per recipient.
    """
    if not settings.feedback_id:
        return None
    host = (urlsplit(settings.site_url).hostname or "localhost").lower()
    number = "preview" if edition is None else str(edition)
    return token_value(settings.feedback_id.format(edition=number, host=host))


def list_unsubscribe(url: str, mailto: str | None) -> str:
    """List-Unsubscribe value, folded between its two URIs (never inside one)."""
    value = f"<{url}>"
    if mailto:
        value += f",\r\n <mailto:{quote(mailto, safe='@')}?subject=unsubscribe>"
    return value


class MessageFactory:
    """Builds the message of one edition for each recipient."""

    def __init__(self, settings: Settings, rendered: RenderedDigest, edition_uid: str,
                 edition: int | None = None) -> None:
        self.settings = settings
        self.feedback_id = feedback_id(settings, edition)
        self.edition = edition
        self.edition_uid = edition_uid
        self.rendered = rendered
        self.sender = sender_address(settings)
        self.boundary = f"=_digest_{edition_uid}"  # "=_" cannot occur in quoted-printable
        self.mailto = settings.unsubscribe_mailto
        self._mailto = list_unsubscribe("", self.mailto)[2:]  # ",\r\n <mailto:...>" or ""
        prototype = self._message(_TEXT_TOKEN, _HTML_TOKEN, None)
        self._head, (self._before_text, self._before_html, self._end) = self._split(prototype)
        self._text = _QuotedPrintable(rendered.text, escape=False)
        self._html = _QuotedPrintable(rendered.html, escape=True)

    # -- the fast path -------------------------------------------------------------

    def build(self, personal: Personal) -> OutgoingMessage:
        """The message for one recipient, as bytes ready for SMTP."""
        values = {RECIPIENT_SLOT: personal.address, UNSUBSCRIBE_SLOT: personal.unsubscribe_url,
                  MANAGE_SLOT: personal.manage_url}
        data = b"".join((self._head, self._personal_headers(personal), self._before_text,
                         self._text.fill(values), self._before_html, self._html.fill(values),
                         self._end))
        return OutgoingMessage(self.envelope_sender(personal.address), personal.address,
                               personal.message_id, data)

    def envelope_sender(self, recipient: str) -> str:
        """DIGEST_FROM's address; with BOUNCE_ADDRESS, its VERP form for this recipient."""
        bounce, secret = self.settings.bounce_address, self.settings.secret_key
        if bounce is None or self.edition is None or not secret:
            return self.sender
        token = verp.make_token(secret, self.edition, self.edition_uid, recipient)
        return verp.envelope_sender(bounce, token)

    def _personal_headers(self, personal: Personal) -> bytes:
        name = one_line(personal.name) if personal.name else None
        if not name:
            to = f"To: {personal.address}\r\n"
        elif _SAFE_NAME.match(name) and "=?" not in name and len(name) + len(personal.address) < 60:
            to = f"To: {name} <{personal.address}>\r\n"
        else:
            to = f"To: {mailbox_value('To', name, personal.address)}\r\n"
        return (f"{to}Date: {format_datetime(personal.date)}\r\n"
                f"Message-ID: {personal.message_id}\r\n"
                f"List-Unsubscribe: <{personal.unsubscribe_url}>{self._mailto}\r\n"
                ).encode("ascii")

    def _split(self, prototype: EmailMessage) -> tuple[bytes, tuple[bytes, bytes, bytes]]:
        raw = prototype.as_bytes(policy=POLICY)
        marker = f"{_PERSONAL}: x\r\n".encode("ascii")
        head, rest = raw.split(marker)
        before_text, rest = rest.split(_TEXT_TOKEN.encode("ascii"))
        before_html, end = rest.split(_HTML_TOKEN.encode("ascii"))
        return head, (before_text, before_html, end)

    # -- the plain path ---------------------------------------------------------------

    def email_message(self, personal: Personal) -> EmailMessage:
        """The same message built wholly by the email package (slow; for checks)."""
        text = (self.rendered.text.replace(RECIPIENT_SLOT, personal.address)
                .replace(UNSUBSCRIBE_SLOT, personal.unsubscribe_url)
                .replace(MANAGE_SLOT, personal.manage_url))
        body = (self.rendered.html.replace(RECIPIENT_SLOT, html.escape(personal.address))
                .replace(UNSUBSCRIBE_SLOT, html.escape(personal.unsubscribe_url))
                .replace(MANAGE_SLOT, html.escape(personal.manage_url)))
        return self._message(text, body, personal)

    def _message(self, text: str, body: str, personal: Personal | None) -> EmailMessage:
        message = EmailMessage(policy=POLICY)
        sender = self.settings.digest_from or _no_sender()
        set_mailbox(message, "From", sender.display_name, sender.address)
        set_text(message, "Subject", self.rendered.subject)
        message.set_raw("List-Id", list_id(self.settings))
        message.set_raw("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")
        message.set_raw("Precedence", "bulk")
        if self.feedback_id is not None:
            message.set_raw("Feedback-ID", self.feedback_id)
        if personal is None:
            message.set_raw(_PERSONAL, "x")  # where build() puts the personal headers
        else:
            set_mailbox(message, "To", one_line(personal.name or ""), personal.address)
            message["Date"] = personal.date
            message.set_raw("Message-ID", personal.message_id)
            message.set_raw("List-Unsubscribe",
                            list_unsubscribe(personal.unsubscribe_url, self.mailto))
        message.set_content(text, cte="quoted-printable")
        message.add_alternative(body, subtype="html", cte="quoted-printable")
        message.set_boundary(self.boundary)
        return message


def plain_message(settings: Settings, recipient: str, subject: str, text: str,
                  date: datetime) -> OutgoingMessage:
    """A one-part text/plain message from DIGEST_FROM with a new Message-ID.

    For mail that is not the digest (the subscription confirmation): no
    List-* headers; ``Auto-Submitted: auto-generated`` (RFC 3834) so that
    vacation responders do not answer it.
    """
    sender = sender_address(settings)
    msg_id = f"<confirm.{uuid.uuid4().hex}@{sender_domain(settings)}>"
    message = EmailMessage(policy=POLICY)
    mailbox = settings.digest_from or _no_sender()
    set_mailbox(message, "From", mailbox.display_name, mailbox.address)
    message["To"] = recipient
    set_text(message, "Subject", one_line(subject))
    message["Date"] = date
    message.set_raw("Message-ID", msg_id)
    message.set_raw("Auto-Submitted", "auto-generated")
    message.set_content(text, cte="quoted-printable")
    return OutgoingMessage(sender, recipient, msg_id, message.as_bytes(policy=POLICY))


def _no_sender() -> NoReturn:
    raise ConfigError("DIGEST_FROM is not set; it is needed to send mail",
                      "add DIGEST_FROM=News <news@example.org> to .env")


class _QuotedPrintable:
    """A body encoded once as quoted-printable, with the personal slots filled per message.

    The text between slots is encoded ahead, each piece starting on a new
    line; a slot's value is encoded alone and followed by a soft line break
    ("=" CRLF, which decoders remove), so no line ever exceeds 76 characters
    and the decoded text is exactly the body with the values put in.
    """

    def __init__(self, body: str, *, escape: bool) -> None:
        self.escape = escape
        pieces = _SLOTS.split(body.rstrip("\n"))
        self.parts: list[bytes | str] = []
        for index, piece in enumerate(pieces):
            if index % 2:
                self.parts.append(piece)  # a slot name
            elif piece:
                encoded = _qp(piece)
                if not piece.endswith("\n") and index < len(pieces) - 1:
                    encoded += b"=\r\n"
                self.parts.append(encoded)

    def fill(self, values: dict[str, str]) -> bytes:
        out: list[bytes] = []
        for part in self.parts:
            if isinstance(part, bytes):
                out.append(part)
            else:
                value = values[part]
                out.append(_qp(html.escape(value) if self.escape else value) + b"=\r\n")
        if out and out[-1].endswith(b"=\r\n") and isinstance(self.parts[-1], str):
            out[-1] = out[-1][:-3]  # the body ends with a slot: no soft break after it
        return b"".join(out)


_SLOTS = re.compile(f"({RECIPIENT_SLOT}|{UNSUBSCRIBE_SLOT}|{MANAGE_SLOT})")


def _qp(text: str) -> bytes:
    """Quoted-printable text with CRLF line ends."""
    return binascii.b2a_qp(text.encode("utf-8"), istext=True).replace(b"\n", b"\r\n")
