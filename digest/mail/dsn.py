"""Read a returned message: an RFC 3464 delivery status notification, an RFC 5965
complaint (ARF), or neither.

:func:`parse_report` takes the raw bytes (anyone can send anything to the
bounce address) and returns a :class:`Report`:

* ``permanent``: a DSN with a recipient whose ``Action`` is ``failed`` or
  whose ``Status`` is 5.x.x;
* ``temporary``: a DSN whose recipients are ``delayed`` or 4.x.x only;
* ``complaint``: a ``multipart/report; report-type=feedback-report`` with a
  ``message/feedback-report`` part (any Feedback-Type: abuse, fraud, ...);
* ``unrecognised``: anything else (an out-of-office reply, a DSN saying
  ``delivered``, a plain-text bounce without a delivery-status part).

It also collects the VERP tokens of `bounce_address` found anywhere in the
message (envelope headers such as Delivered-To, the returned headers'
Return-Path, the report's Original-Mail-From); they are not verified here.

Bounded work: at most MAX_BYTES are read, and at most MAX_RECIPIENTS
per-recipient blocks. Whatever the input, the only exception raised is
:class:`ReportError`.
"""

from __future__ import annotations

import email
import email.errors
import re
from dataclasses import dataclass
from email.message import Message
from typing import Literal

from digest.errors import DigestError
from digest.mail.verp import tokens_in

Kind = Literal["permanent", "temporary", "complaint", "unrecognised"]
MAX_BYTES = 4 * 1024 * 1024
MAX_RECIPIENTS = 100
_STATUS = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b", re.ASCII)
_DIAGNOSTIC_MAX = 300


class ReportError(DigestError):
    """A returned message that cannot be read at all."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "it is left alone; look at it by hand if it matters")


@dataclass(frozen=True)
class Report:
    kind: Kind
    tokens: tuple[str, ...] = ()  # VERP tokens found (unverified)
    recipient: str | None = None  # Final-Recipient (DSN) or Original-Rcpt-To (ARF), as written
    status: str = ""  # "5.1.1" (DSN) or the feedback type (ARF)
    diagnostic: str = ""  # the remote server's words, on one line

    def describe(self) -> str:
        """One line for the subscriber's last bounce."""
        what = {"permanent": "bounce", "temporary": "delay", "complaint": "complaint",
                "unrecognised": "unrecognised"}[self.kind]
        return " ".join(part for part in (what, self.status, self.diagnostic) if part)


def parse_report(data: bytes, bounce_address: str | None) -> Report:
    """Classify a returned message; ReportError if the email parser cannot read it."""
    if len(data) > MAX_BYTES:
        raise ReportError(f"the message is larger than {MAX_BYTES} bytes")
    try:
        message = email.message_from_bytes(data)
        text = data.decode("ascii", "replace")
        tokens = tuple(tokens_in(text, bounce_address)) if bounce_address else ()
        return _classify(message, tokens)
    except (email.errors.MessageError, LookupError, ValueError, TypeError,
            AttributeError, UnicodeError, RecursionError) as exc:
        raise ReportError(f"the message cannot be read ({type(exc).__name__})") from exc


def _classify(message: Message, tokens: tuple[str, ...]) -> Report:
    if message.get_content_type() != "multipart/report" or not message.is_multipart():
        return Report("unrecognised", tokens)
    report_type = str(message.get_param("report-type", "") or "").lower()
    parts = [p for p in message.walk() if isinstance(p, Message)][:50]
    if report_type == "feedback-report":
        for part in parts:
            if part.get_content_type() == "message/feedback-report":
                return _complaint(part, tokens)
        return Report("unrecognised", tokens)
    if report_type == "delivery-status":
        for part in parts:
            if part.get_content_type() in ("message/delivery-status",
                                           "message/global-delivery-status"):
                return _delivery_status(part, tokens)
    return Report("unrecognised", tokens)


def _delivery_status(part: Message, tokens: tuple[str, ...]) -> Report:
    blocks = _blocks(part)
    permanent: list[Message] = []
    temporary: list[Message] = []
    for block in blocks[1:MAX_RECIPIENTS + 1]:  # the first block is about the message
        action = _field(block, "Action").lower()
        status = _STATUS.match(_field(block, "Status"))
        klass = status.group(1) if status else ""
        if action == "failed" or (klass == "5" and action not in ("delivered", "relayed",
                                                                  "expanded")):
            permanent.append(block)
        elif action == "delayed" or klass == "4":
            temporary.append(block)
    chosen = permanent or temporary
    if not chosen:
        return Report("unrecognised", tokens)
    block = chosen[0]
    status = _STATUS.match(_field(block, "Status"))
    code = ".".join(status.groups()) if status else ""
    diagnostic = _field(block, "Diagnostic-Code")
    if ";" in diagnostic:
        diagnostic = diagnostic.split(";", 1)[1]
    return Report("permanent" if permanent else "temporary", tokens,
                  _address(_field(block, "Final-Recipient")) or None, code,
                  _one_line(diagnostic))


def _complaint(part: Message, tokens: tuple[str, ...]) -> Report:
    blocks = _blocks(part)
    fields = blocks[0] if blocks else Message()
    kind = _field(fields, "Feedback-Type").lower() or "abuse"
    recipient = _address(_field(fields, "Original-Rcpt-To")) or None
    return Report("complaint", tokens, recipient, _one_line(kind)[:40],
                  _one_line(_field(fields, "User-Agent")))


def _blocks(part: Message) -> list[Message]:
    """The header blocks of a delivery-status or feedback-report part."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [b for b in payload if isinstance(b, Message)]
    if isinstance(payload, str):
        text = payload.replace("\r\n", "\n")
        return [email.message_from_string(chunk.strip("\n") + "\n")
                for chunk in re.split(r"\n[ \t]*\n", text)[:MAX_RECIPIENTS + 1] if chunk.strip()]
    return []


def _field(block: Message, name: str) -> str:
    value = block.get(name)
    return _one_line(str(value)) if value is not None else ""


def _address(value: str) -> str:
    """'rfc822; ann@example.org' -> 'ann@example.org' (as written, lower case)."""
    if ";" in value:
        value = value.split(";", 1)[1]
    return value.strip().strip("<>").lower()


def _one_line(text: str) -> str:
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())[
        :_DIAGNOSTIC_MAX]
