"""Email addresses: validate and normalise one, or read a list of them from a file.

This is the one address normaliser of digest: settings (DIGEST_FROM,
DIGEST_RECIPIENTS, UNSUBSCRIBE_MAILTO), the subscriber list, imports, the
sign-up form, ``send --to`` and the mailer's envelope all go through
:func:`normalize_address`, so one person is one address everywhere.

The normal form: trimmed, the whole address in lower case (mailbox names are
case-sensitive in theory and case-insensitive at every real provider; one
form is what keeps Ann@Example.org and ann@example.org from getting two
digests), the domain in IDNA 2008 ASCII form (UTS 46 mapping, non-transitional:
``straße.de`` is ``xn--strae-oqa.de``, never ``strasse.de``). Local parts must
be ASCII dot-atoms (no quoted local parts, no SMTPUTF8), which every SMTP
server accepts. The normal form is a fixed point: normalising it again gives
it back.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from dataclasses import dataclass
from email.headerregistry import Address
from pathlib import Path
from urllib.parse import quote

import idna

from digest.errors import SubscriberError
from digest.headers import mailbox_value, plain, reads_back

_LOCAL = re.compile(r"^[a-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_NAMED = re.compile(r"^\s*(.*?)\s*<([^<>]*)>\s*$")
_LDH = re.compile(r"^[a-z0-9.-]+$")
_LINE_END = re.compile(r"\r\n|\r|\n")  # the only line ends of a text file or a CSV
NAME_MAX = 200  # characters of a display name
_HEADER_NAMES = ("email", "e-mail", "email address", "e-mail address", "mail", "address")


@dataclass(frozen=True)
class AddressLine:
    """One address read from an import file, with where it was found."""

    line: int
    address: str
    name: str | None


@dataclass(frozen=True)
class Mailbox:
    """A display name (maybe empty) and a normalised address: what From and To hold."""

    display_name: str
    address: str

    def __str__(self) -> str:
        return str(Address(display_name=self.display_name, addr_spec=self.address))


def normalize_address(text: str, where: str = "address") -> str:
    """Return the normal form of an address, or raise SubscriberError naming `where`."""
    candidate = text.strip()
    problem = _problem(candidate)
    if problem:
        raise SubscriberError(f"{where}: {text!r} is not an email address ({problem})",
                              "use the form name@example.org")
    local, domain = candidate.rsplit("@", 1)
    return f"{local.lower()}@{_ascii_domain(domain)}"


def is_normal_address(text: str) -> bool:
    """True if `text` is an address in normal form (what the mailer puts in the envelope)."""
    try:
        return normalize_address(text) == text
    except SubscriberError:
        return False


def parse_mailbox(text: str, where: str = "address") -> Mailbox:
    """'Name <addr>', '"Name, Inc." <addr>' or a bare address, parsed strictly.

    The display name is everything before the last '<' (quotes around it are
    removed, backslash escapes undone); it may contain commas, colons and '@',
    which the header builder quotes. The result is checked by building the
    header with the email package and parsing it back: what is sent is exactly
    one mailbox with this name and this address. Raises SubscriberError naming
    `where`.
    """
    hint = 'use the form name@example.org or "Display Name" <name@example.org>'
    if any(not c.isprintable() for c in text):
        raise SubscriberError(f"{where}: {text!r} contains a line break or control character",
                              hint)
    match = _NAMED.match(text)
    if not match:
        if "<" in text or ">" in text:
            raise SubscriberError(f"{where}: {text!r} is not an email address (unbalanced < >)",
                                  hint)
        return Mailbox("", normalize_address(text, where))
    name, address = match.group(1).strip(), normalize_address(match.group(2), where)
    quoted = re.fullmatch(r'"((?:[^"\\]|\\.)*)"', name)
    if quoted:
        name = re.sub(r"\\(.)", r"\1", quoted.group(1))
    elif '"' in name or "<" in name or ">" in name:
        raise SubscriberError(f"{where}: {text!r}: the display name has < > or a stray quote",
                              'put the name in double quotes, e.g. "Acme News" <news@acme.org>')
    name = " ".join(name.split())
    if "=?" in name:  # sent as these very characters: readers would see "=?utf-8?q?...?="
        raise SubscriberError(f"{where}: {text!r}: the display name is RFC 2047-encoded "
                              "(=?...?=)", 'write it as plain text, e.g. "Café News" '
                              "<news@example.org>: digest encodes it")
    if len(name) > NAME_MAX or not plain(name):
        raise SubscriberError(f"{where}: the display name is too long (at most {NAME_MAX} "
                              "characters, no word over 60)", "use a shorter name")
    mailbox = Mailbox(name, address)
    _check_round_trip(mailbox, text, where)
    return mailbox


def _check_round_trip(mailbox: Mailbox, text: str, where: str) -> None:
    """Build the header as the mailer does, parse it back: the same single mailbox."""
    value = mailbox_value("From", mailbox.display_name, mailbox.address)
    if not reads_back("From", value, Address(mailbox.display_name, addr_spec=mailbox.address)):
        raise SubscriberError(f"{where}: {text!r} does not read back as one address",
                              'put the name in double quotes, e.g. "Acme News" <news@acme.org>')


def file_name_part(address: str, limit: int = 200) -> str:
    """The address as one safe file name part: percent-encoded, never a path."""
    encoded = quote(address, safe="@+-_.")
    if len(encoded) <= limit:
        return encoded
    digest = hashlib.sha256(address.encode()).hexdigest()[:16]
    return f"{encoded[:limit - 17].rstrip('%')}-{digest}"


def split_lines(text: str) -> list[str]:
    """Lines at CR LF, CR or LF only (not at U+2028, U+0085, vertical tab as splitlines does)."""
    lines = _LINE_END.split(text)
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def split_named(text: str) -> tuple[str | None, str]:
    """Split 'Name <addr>' into (name, addr); a bare address gives (None, addr)."""
    match = _NAMED.match(text)
    if not match:
        return None, text.strip()
    name = clean_name(match.group(1).strip().strip('"').strip())
    return name, match.group(2).strip()


def clean_name(name: str | None) -> str | None:
    """A display name on one line without control characters, or None if empty."""
    if not name:
        return None
    cleaned = " ".join("".join(c if c.isprintable() else " " for c in name).split())
    return cleaned or None


def read_address_file(path: Path) -> list[AddressLine]:
    """Addresses from a CSV file (an `email` column, else the first) or one per line.

    Blank lines and lines starting with '#' are skipped. Every address is
    validated; the first bad one raises SubscriberError naming file and line.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise SubscriberError(f"{path}: cannot read ({exc.strerror or exc})",
                              "check the file name and its permissions") from exc
    except UnicodeDecodeError as exc:
        raise SubscriberError(f"{path}: not UTF-8 text ({exc.reason})",
                              "save the file as UTF-8 (CSV UTF-8 in spreadsheets)") from exc
    lines = split_lines(text)
    first = next((line for line in lines if line.strip() and not line.startswith("#")), "")
    if path.suffix.lower() == ".csv" or any(sep in first for sep in ",;\t"):
        return _read_csv(path, text)
    found: list[AddressLine] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, address = split_named(line)
        found.append(AddressLine(number, normalize_address(address, f"{path} line {number}"),
                                 name))
    return found


def _read_csv(path: Path, text: str) -> list[AddressLine]:
    sample = text[:4096]
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(sample, ",;\t")
    except csv.Error:
        dialect = csv.excel
    rows = csv.reader(io.StringIO(text, newline=""), dialect)
    found: list[AddressLine] = []
    column = 0
    name_column: int | None = None
    header_seen = False
    try:
        for row in rows:
            number = rows.line_num
            cells = [cell.strip() for cell in row]
            if not any(cells) or cells[0].startswith("#"):
                continue
            if not header_seen:
                header_seen = True
                lowered = [cell.lower() for cell in cells]
                named = [i for i, cell in enumerate(lowered) if cell in _HEADER_NAMES]
                if named:
                    column = named[0]
                    name_column = next((i for i, cell in enumerate(lowered)
                                        if cell in ("name", "full name", "display name")), None)
                    continue
                if "@" not in cells[0]:
                    continue  # a header row without an email column: use the first
            where = f"{path} line {number}"
            if column >= len(cells) or not cells[column]:
                raise SubscriberError(f"{where}: no address in this row",
                                      "give every row an address, or delete the row")
            name, address = split_named(cells[column])
            if name_column is not None and name_column < len(cells):
                name = clean_name(cells[name_column]) or name
            found.append(AddressLine(number, normalize_address(address, where), name))
    except csv.Error as exc:
        raise SubscriberError(f"{path} line {rows.line_num}: not valid CSV ({exc})",
                              "check the quotes on that line") from exc
    return found


def _problem(candidate: str) -> str | None:
    if not candidate:
        return "empty"
    if any(ord(c) < 33 or ord(c) == 127 for c in candidate):
        return "contains spaces or control characters"
    if candidate.count("@") != 1:
        return "needs exactly one @"
    local, domain = candidate.rsplit("@", 1)
    if not local or len(local) > 64:
        return "the part before @ must have 1 to 64 characters"
    if not local.isascii():
        return "the part before @ must be ASCII"
    if not _LOCAL.match(local.lower()):
        return "the part before @ has characters or dots not allowed there"
    if len(domain) > 255:
        return "too long"
    try:
        ascii_domain = _ascii_domain(domain)
    except (UnicodeError, ValueError):  # idna.IDNAError is both
        return "the domain is not a valid name"
    labels = ascii_domain.split(".")
    if len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
        return "the domain is not a valid name"
    if labels[-1].isdigit():
        return "the domain is not a valid name"
    if len(ascii_domain) > 253 or len(local) + 1 + len(ascii_domain) > 254:
        return "too long"
    return None


def _ascii_domain(domain: str) -> str:
    """The domain in lower-case ASCII: IDNA 2008 with UTS 46 mapping (non-transitional)."""
    lowered = domain.lower()
    if _LDH.match(lowered) and not any(label.startswith("xn--") for label in lowered.split(".")):
        return lowered
    ascii_domain = idna.encode(domain, uts46=True, transitional=False).decode("ascii")
    if idna.encode(idna.decode(ascii_domain), uts46=True).decode("ascii") != ascii_domain:
        raise UnicodeError("not a stable IDNA name")
    return ascii_domain
