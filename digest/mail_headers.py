"""Header values folded within RFC 5322's and RFC 2047's limits.

The email package folds most headers well, but in Python 3.11 it leaves a
word longer than a line as it is (a 2,000-character title without spaces was
one 2,028-octet line). Here a text with such a word is written as RFC 2047
encoded words instead, each at most 75 characters, folded onto lines of at
most 78: every line stays far below 998 octets, and a parser decodes the
value back to the exact text. Texts of ordinary words are left to the email
package (quoting, RFC 2047 for non-ASCII).

A display name (From, To) with such a word is not encoded that way: parsers
(Python's included) insert spaces between the encoded words of a name.
DIGEST_FROM refuses it at start; a subscriber's name is then left out of To.
"""

from __future__ import annotations

from email import policy as email_policy
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage

POLICY = email_policy.SMTP.clone(refold_source="none")
LINE = 78  # the recommended line length (RFC 5322 2.1.1)
WORD_MAX = 60  # longer words are RFC 2047-encoded so they can be split


def plain(text: str) -> bool:
    """True if the email package can fold `text` itself (no word too long for a line)."""
    return all(len(word) <= WORD_MAX for word in text.split(" "))


def encoded_words(text: str, header_name: str) -> str:
    """`text` as UTF-8 encoded words (each <= 75 characters), folded with CRLF SP."""
    return Header(text, "utf-8", maxlinelen=LINE, header_name=header_name).encode(linesep="\r\n")


def _append(value: str, tail: str) -> str:
    last = value.rsplit("\n", 1)[-1]
    return value + ("\r\n " if len(last) + 1 + len(tail) > LINE else " ") + tail


def set_text(message: EmailMessage, name: str, text: str) -> None:
    """Set an unstructured header (Subject)."""
    if plain(text):
        message[name] = text
    else:
        message.set_raw(name, encoded_words(text, name))


def set_mailbox(message: EmailMessage, name: str, display_name: str, address: str) -> None:
    """Set a one-mailbox header (From, To)."""
    message.set_raw(name, mailbox_value(name, display_name, address))


def mailbox_value(name: str, display_name: str, address: str) -> str:
    """The folded value of a one-mailbox header (without 'Name: ' and the final CRLF).

    A display name with a word too long to fold is left out.
    """
    mailbox = Address(display_name if plain(display_name) else "", addr_spec=address)
    folded = POLICY.header_factory(name, str(mailbox)).fold(policy=POLICY)
    return str(folded)[len(name) + 1:].strip(" ").removesuffix("\r\n")


def list_id_value(title: str, list_address: str) -> str:
    """RFC 2919 List-Id: the title as phrase (quoted or encoded), then <list_address>."""
    if not title:
        return f"<{list_address}>"
    if title.isascii() and plain(title):
        phrase = mailbox_value("List-Id", title, "x@x.x").rsplit("<x@x.x>", 1)[0].rstrip()
        return _append(phrase, f"<{list_address}>")
    return _append(encoded_words(title, "List-Id"), f"<{list_address}>")
