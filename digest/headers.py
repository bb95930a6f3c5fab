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

import base64
import re
from email import message_from_bytes
from email import policy as email_policy
from email.headerregistry import Address
from email.message import EmailMessage

POLICY = email_policy.SMTP.clone(refold_source="none")
LINE = 78  # the recommended line length (RFC 5322 2.1.1)
WORD_MAX = 60  # longer words are RFC 2047-encoded so they can be split
_CHUNK = 42  # UTF-8 octets per encoded word: 56 base64 characters, a 68-character word
_ENCODED_WORD = re.compile(r"=\?[^?\s]*\?[bqBQ]\?[^?\s]*\?=")


def plain(text: str) -> bool:
    """True if the email package can fold `text` itself (no word too long for a line)."""
    return all(len(word) <= WORD_MAX for word in text.split(" "))


def _ascii_words(text: str) -> bool:
    """Printable ASCII words of a foldable length, none looking like an encoded word."""
    return text.isascii() and text.isprintable() and plain(text) and "=?" not in text


def encoded_words(text: str, header_name: str = "") -> str:
    """`text` as UTF-8 'B' encoded words of 68 characters, one per line (CRLF SP).

    Chunks never split a character; a decoder joins adjacent encoded words
    without the whitespace between them, giving back `text` exactly.
    """
    chunks: list[bytes] = []
    for char in text:
        octets = char.encode("utf-8", "surrogatepass")
        if chunks and len(chunks[-1]) + len(octets) <= _CHUNK:
            chunks[-1] += octets
        else:
            chunks.append(octets)
    return "\r\n ".join(f"=?utf-8?b?{base64.b64encode(c).decode('ascii')}?=" for c in chunks)


def fits(value: str) -> bool:
    """Every line of a folded value within 998 octets, every encoded word within 75."""
    return (all(len(line.encode()) <= 990 for line in value.split("\r\n"))
            and all(len(word) <= 75 for word in _ENCODED_WORD.findall(value)))


def _append(value: str, tail: str) -> str:
    last = value.rsplit("\n", 1)[-1]
    return value + ("\r\n " if len(last) + 1 + len(tail) > LINE else " ") + tail


def set_text(message: EmailMessage, name: str, text: str) -> None:
    """Set an unstructured header (Subject)."""
    if _ascii_words(text):
        message[name] = text
    else:
        message.set_raw(name, encoded_words(text, name))


def set_mailbox(message: EmailMessage, name: str, display_name: str, address: str) -> None:
    """Set a one-mailbox header (From, To)."""
    message.set_raw(name, mailbox_value(name, display_name, address))


def mailbox_value(name: str, display_name: str, address: str) -> str:
    """The folded value of a one-mailbox header (without 'Name: ' and the final CRLF).

    Every display name is checked by parsing the header back. The email
    package's folding is tried first; when it breaks the name (in Python 3.11
    it drops the quotes of a quoted name it splits across lines, so
    "Smith, John (Head of ... Limited)" became the two addresses "Smith" and
    "John <...>"), an ASCII name is written as one quoted string followed by
    the address on the next line. A name with "=?" in it (text that mail
    clients decode as an encoded word: "=?utf-8?b?SGk=?=" showed as "Hi") is
    written as encoded words of itself. A name that still does not read back,
    or that has a word too long for a line, is left out.
    """
    if display_name and plain(display_name):
        mailbox = Address(display_name, addr_spec=address)
        for value in _mailbox_forms(name, mailbox):
            if fits(value) and reads_back(name, value, mailbox):
                return value
    return _folded(name, Address("", addr_spec=address))


def _mailbox_forms(name: str, mailbox: Address) -> list[str]:
    if "=?" in mailbox.display_name:
        return [f"{encoded_words(mailbox.display_name)}\r\n <{mailbox.addr_spec}>"]
    forms = [_folded(name, mailbox)]
    if mailbox.display_name.isascii():
        quoted = mailbox.display_name.replace("\\", "\\\\").replace('"', '\\"')
        forms.append(f'"{quoted}"\r\n <{mailbox.addr_spec}>')
    return forms


def _folded(name: str, mailbox: Address) -> str:
    folded = POLICY.header_factory(name, str(mailbox)).fold(policy=POLICY)
    return str(folded)[len(name) + 1:].strip(" ").removesuffix("\r\n")


def reads_back(name: str, value: str, mailbox: Address) -> bool:
    """The folded header parses back to exactly this one mailbox, without defects."""
    message = message_from_bytes(f"{name}: {value}\r\n\r\n".encode(), policy=email_policy.default)
    try:
        header = message[name]
    except (AttributeError, IndexError, ValueError):  # the email package fails on some groups
        return False
    found: tuple[Address, ...] = getattr(header, "addresses", ())
    return (len(found) == 1 and not header.defects and found[0].addr_spec == mailbox.addr_spec
            and found[0].display_name == mailbox.display_name)


def list_id_value(title: str, list_address: str) -> str:
    """RFC 2919 List-Id: the title as phrase (quoted or encoded), then <list_address>."""
    if not title:
        return f"<{list_address}>"
    if _ascii_words(title):
        value = mailbox_value("From", title, "x@x.x")  # the email package quotes the phrase
        if value.endswith("<x@x.x>"):  # (else it left the title out)
            return _append(value.rsplit("<x@x.x>", 1)[0].rstrip(), f"<{list_address}>")
    return _append(encoded_words(title, "List-Id"), f"<{list_address}>")


def token_value(text: str) -> str:
    """A one-word header value (Feedback-ID): printable ASCII, no spaces, at most
    200 characters, so it needs no folding or encoding. ValueError otherwise."""
    if not text or len(text) > 200 or not all("!" <= c <= "~" for c in text):
        raise ValueError(f"not a one-word ASCII header value: {text!r}")
    return text
