"""Signed, URL-safe tokens for unsubscribe and confirmation links.

A token binds a *purpose* (``"unsubscribe"``, ``"confirm"``), an email address
and the time it was issued, signed with HMAC-SHA256 keyed by SECRET_KEY::

    token = make_token(secret, "unsubscribe", "ann@example.org", now)
    address = verify_token(secret, "unsubscribe", token, now, max_age=None)

Its form is ``<address>.<issued>.<signature>``: the address in unpadded
base64url, the issue time as base-36 Unix seconds, the signature in unpadded
base64url. It uses only ``A-Z a-z 0-9 - _ .``, so it needs no escaping in a
URL and is never folded or encoded inside a mail header.

The purpose is not written into the token, only signed: a confirmation token
does not verify as an unsubscribe token. The address is readable by whoever
holds the token (it is the recipient's own address); it cannot be changed
without the key. Changing SECRET_KEY invalidates every token issued before.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from datetime import UTC, datetime, timedelta

from digest.errors import DigestError

PURPOSE_UNSUBSCRIBE = "unsubscribe"
PURPOSE_CONFIRM = "confirm"

# Tokens issued a little in the future are accepted (clocks of two nodes differ).
CLOCK_SKEW = timedelta(minutes=5)
_VERSION = b"digest-token-1"
_B64_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


class TokenError(DigestError):
    """A token is malformed, forged, tampered with, expired or for another purpose."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message, "ask for a new link")
        self.reason = reason  # "malformed", "invalid" or "expired"


def make_token(secret: str, purpose: str, address: str, issued_at: datetime) -> str:
    """Sign (purpose, address, issued_at) and return the URL-safe token."""
    if not secret:
        raise ValueError("make_token needs a non-empty secret")
    issued = _seconds(issued_at)
    payload = _b64(address.encode("utf-8")) + "." + _base36(issued)
    return payload + "." + _b64(_sign(secret, purpose, address, issued))


def verify_token(secret: str, purpose: str, token: str, now: datetime,
                 max_age: timedelta | None) -> str:
    """Return the address the token was issued for, or raise TokenError.

    `max_age` None accepts a token of any age (unsubscribe links in old mail
    must keep working); a confirmation link should use a few days.
    """
    if not secret:
        raise ValueError("verify_token needs a non-empty secret")
    parts = token.strip().split(".")
    if len(parts) != 3:
        raise TokenError("the link is incomplete or damaged", "malformed")
    try:
        address = _unb64(parts[0]).decode("utf-8")
        issued = int(parts[1], 36)
        signature = _unb64(parts[2])
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise TokenError("the link is incomplete or damaged", "malformed") from None
    if _base36(issued) != parts[1]:  # one spelling per token: no "+1", "0 1" or "1_0"
        raise TokenError("the link is incomplete or damaged", "malformed")
    expected = _sign(secret, purpose, address, issued)
    if not hmac.compare_digest(signature, expected):
        raise TokenError("the link is not valid (altered, or made for another purpose)",
                         "invalid")
    age = _seconds(now) - issued
    if age < -CLOCK_SKEW.total_seconds():
        raise TokenError("the link is not valid (issued in the future)", "invalid")
    if max_age is not None and age > max_age.total_seconds():
        raise TokenError("the link has expired", "expired")
    return address


def issued_at(token: str) -> datetime:
    """The (unverified) issue time written in a token; for display and logs only."""
    try:
        return datetime.fromtimestamp(int(token.split(".")[1], 36), UTC)
    except (IndexError, ValueError, OverflowError):
        raise TokenError("the link is incomplete or damaged", "malformed") from None


def _sign(secret: str, purpose: str, address: str, issued: int) -> bytes:
    message = b"\x00".join((_VERSION, purpose.encode("utf-8"), address.encode("utf-8"),
                            str(issued).encode("ascii")))
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).digest()


def _seconds(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("tokens need a timezone-aware datetime")
    return int(moment.timestamp())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not text or not all(c in _B64_ALPHABET for c in text):
        raise ValueError("not base64url")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64(data) != text:  # unused trailing bits set: not the token we made
        raise ValueError("not canonical base64url")
    return data


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
        if number == 0:
            return out
