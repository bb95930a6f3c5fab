"""Signed, URL-safe tokens for unsubscribe and confirmation links.

A token binds a *purpose* (``"unsubscribe"``, ``"confirm"``), an email address
and the time it was issued, signed with HMAC-SHA256 keyed by SECRET_KEY::

    token = make_token(secret, "unsubscribe", "ann@example.org", now)
    address = verify_token(secret, "unsubscribe", token, now, max_age=None)

Its form is ``<address>.<issued>.<signature>``: the address in unpadded
base64url, the issue time as base-36 Unix seconds, the signature in unpadded
base64url. Anyone can send anything as a token, so it is read strictly and
with bounded work: at most MAX_TOKEN characters, each field in the one
spelling :func:`make_token` writes (canonical base64url; lowercase base-36
without sign or leading zeros, at most 8 digits), the signature checked (in
constant time) before the address or the time is trusted, and the time within
EARLIEST..LATEST. It uses only ``A-Z a-z 0-9 - _ .``, so it needs no escaping in a
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
PURPOSE_MANAGE = "manage"  # the "manage your subscription" link: topics and cadence

# Tokens issued a little in the future are accepted (clocks of two nodes differ).
CLOCK_SKEW = timedelta(minutes=5)
_VERSION = b"digest-token-1"
_B64_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
_BASE36_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
# An address is at most 254 octets (RFC 5321 4.5.3.1.3); base64 makes 4 of 3.
MAX_ADDRESS_FIELD = 340
MAX_ISSUED_DIGITS = 8  # 36**8 seconds is past the year 90000: LATEST fits easily
_SIGNATURE_FIELD = 43  # 32 bytes of HMAC-SHA256, unpadded base64url
MAX_TOKEN = MAX_ADDRESS_FIELD + 1 + MAX_ISSUED_DIGITS + 1 + _SIGNATURE_FIELD
# Issue times outside these bounds are no token of ours (Unix seconds, UTC).
EARLIEST = int(datetime(2020, 1, 1, tzinfo=UTC).timestamp())
LATEST = int(datetime(2200, 1, 1, tzinfo=UTC).timestamp())


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
    if not EARLIEST <= issued < LATEST:
        raise ValueError(f"tokens are issued between 2020 and 2200, not at {issued_at}")
    payload = _b64(address.encode("utf-8")) + "." + _base36(issued)
    return payload + "." + _b64(_sign(secret, purpose, address.encode("utf-8"), issued))


def verify_token(secret: str, purpose: str, token: str, now: datetime,
                 max_age: timedelta | None) -> str:
    """Return the address the token was issued for, or raise TokenError.

    `max_age` None accepts a token of any age (unsubscribe links in old mail
    must keep working); a confirmation link should use a few days.
    """
    if not secret:
        raise ValueError("verify_token needs a non-empty secret")
    address_field, issued, signature = _fields(token)
    try:
        address = address_field.decode("utf-8")
    except UnicodeDecodeError:
        address = None
    expected = _sign(secret, purpose, address_field, issued)
    if not hmac.compare_digest(signature, expected) or address is None:
        raise TokenError("the link is not valid (altered, or made for another purpose)",
                         "invalid")
    if not EARLIEST <= issued < LATEST:
        raise TokenError("the link is not valid (issued at an impossible time)", "invalid")
    age = _seconds(now) - issued
    if age < -CLOCK_SKEW.total_seconds():
        raise TokenError("the link is not valid (issued in the future)", "invalid")
    if max_age is not None and age > max_age.total_seconds():
        raise TokenError("the link has expired", "expired")
    return address


def issued_at(token: str) -> datetime:
    """The (unverified) issue time written in a token; for display and logs only."""
    issued = _fields(token)[1]
    if not EARLIEST <= issued < LATEST:
        raise TokenError("the link is not valid (issued at an impossible time)", "invalid")
    return datetime.fromtimestamp(issued, UTC)


def _fields(token: str) -> tuple[bytes, int, bytes]:
    """(address bytes, issue time, signature) of a well-formed token, else TokenError.

    Bounded work whatever `token` is: its length is checked first, and every
    field must be the one spelling make_token writes ("+1", "01", "1_0", "A"
    for "a", a sign or padding are refused).
    """
    malformed = TokenError("the link is incomplete or damaged", "malformed")
    if len(token) > MAX_TOKEN:
        raise malformed
    parts = token.split(".")
    if len(parts) != 3:
        raise malformed
    address_text, issued_text, signature_text = parts
    if (len(address_text) > MAX_ADDRESS_FIELD or len(signature_text) != _SIGNATURE_FIELD
            or not _is_base36(issued_text)):
        raise malformed
    try:
        return _unb64(address_text), int(issued_text, 36), _unb64(signature_text)
    except (ValueError, binascii.Error):
        raise malformed from None


def _is_base36(text: str) -> bool:
    """True for the canonical base-36 spelling of a number of at most MAX_ISSUED_DIGITS."""
    if not 0 < len(text) <= MAX_ISSUED_DIGITS or not all(c in _BASE36_DIGITS for c in text):
        return False
    return text == "0" or text[0] != "0"


def _sign(secret: str, purpose: str, address: bytes, issued: int) -> bytes:
    message = b"\x00".join((_VERSION, purpose.encode("utf-8"), address,
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
    """The base-36 spelling of a number >= 0 (a negative one would never reach 0)."""
    if number < 0:
        raise ValueError(f"base 36 of a negative number: {number}")
    out = ""
    while True:
        number, rest = divmod(number, 36)
        out = _BASE36_DIGITS[rest] + out
        if number == 0:
            return out
