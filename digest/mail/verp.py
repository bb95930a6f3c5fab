"""VERP: a signed envelope sender per message, so a bounce names its delivery.

With BOUNCE_ADDRESS=bounces@example.org the digest to one recipient of
edition 42 goes out with the envelope sender (MAIL FROM, later the bounce's
destination) ``bounces+42-<key>-<signature>@example.org``:

* ``42``: the edition (decimal, no leading zero);
* ``<key>``: 20 hex digits of SHA-256 over the edition's uid and the
  recipient address (:func:`recipient_key`): the store finds the recipient
  among that edition's deliveries; the address itself is not written (a
  local part holds at most 64 octets, RFC 5321 4.5.3.1.1);
* ``<signature>``: 20 hex digits (80 bits) of HMAC-SHA256 keyed by
  SECRET_KEY over the edition and the key.

Only lower-case hex and digits, so a server that changes the case of the
local part does not break it; read strictly (:func:`parse_token`): one
spelling, bounded length, signature checked in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

from digest.errors import DigestError

_TOKEN = re.compile(r"^([1-9][0-9]{0,8})-([0-9a-f]{20})-([0-9a-f]{20})$", re.ASCII)
MAX_TOKEN = 9 + 1 + 20 + 1 + 20
_VERSION = b"digest-verp-1"


class VerpError(DigestError):
    """A bounce address token that is malformed or not signed by this installation."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "the message is not a reply to a digest sent with this "
                                  "SECRET_KEY and BOUNCE_ADDRESS")


@dataclass(frozen=True)
class BounceToken:
    edition: int
    key: str  # recipient_key(edition uid, address)


def recipient_key(edition_uid: str, address: str) -> str:
    return hashlib.sha256(f"verp\x00{edition_uid}\x00{address}".encode()).hexdigest()[:20]


def make_token(secret: str, edition: int, edition_uid: str, address: str) -> str:
    if not secret:
        raise ValueError("make_token needs a non-empty secret")
    key = recipient_key(edition_uid, address)
    return f"{edition}-{key}-{_sign(secret, edition, key)}"


def envelope_sender(bounce_address: str, token: str) -> str:
    """bounces@example.org + token -> bounces+token@example.org."""
    local, _, domain = bounce_address.rpartition("@")
    return f"{local}+{token}@{domain}"


def parse_token(secret: str, token: str) -> BounceToken:
    """The edition and recipient key of a token this installation signed, else VerpError."""
    if len(token) > MAX_TOKEN:
        raise VerpError("the bounce address token is too long")
    match = _TOKEN.match(token.lower())
    if match is None:
        raise VerpError("the bounce address token is malformed")
    edition, key, signature = int(match.group(1)), match.group(2), match.group(3)
    if not hmac.compare_digest(signature, _sign(secret, edition, key)):
        raise VerpError("the bounce address token is not signed with this SECRET_KEY")
    return BounceToken(edition, key)


def tokens_in(text: str, bounce_address: str) -> list[str]:
    """The (unverified) tokens of every `local+token@domain` of `bounce_address` in `text`."""
    local, _, domain = bounce_address.rpartition("@")
    pattern = re.compile(rf"(?<![\w.+-]){re.escape(local)}\+([0-9a-z-]{{1,{MAX_TOKEN}}})"
                         rf"@{re.escape(domain)}(?![\w-])", re.IGNORECASE | re.ASCII)
    return list(dict.fromkeys(m.group(1).lower() for m in pattern.finditer(text)))


def _sign(secret: str, edition: int, key: str) -> str:
    message = b"\x00".join((_VERSION, str(edition).encode("ascii"), key.encode("ascii")))
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()[:20]
