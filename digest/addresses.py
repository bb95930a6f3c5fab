"""Email addresses: validate and normalise one, or read a list of them from a file.

Addresses are kept in one normal form: trimmed, lower case, the domain in
IDNA (punycode) form. Local parts must be ASCII dot-atoms (no quoted local
parts, no SMTPUTF8), which every SMTP server accepts.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

from digest.errors import SubscriberError

_LOCAL = re.compile(r"^[a-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_NAMED = re.compile(r"^\s*(.*?)\s*<([^<>]*)>\s*$")
_HEADER_NAMES = ("email", "e-mail", "email address", "e-mail address", "mail", "address")


@dataclass(frozen=True)
class AddressLine:
    """One address read from an import file, with where it was found."""

    line: int
    address: str
    name: str | None


def normalize_address(text: str, where: str = "address") -> str:
    """Return the normal form of an address, or raise SubscriberError naming `where`."""
    candidate = text.strip()
    problem = _problem(candidate)
    if problem:
        raise SubscriberError(f"{where}: {text!r} is not an email address ({problem})",
                              "use the form name@example.org")
    local, domain = candidate.rsplit("@", 1)
    return f"{local.lower()}@{_ascii_domain(domain)}"


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
    lines = text.splitlines()
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
    rows = csv.reader(io.StringIO(text), dialect)
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
    try:
        ascii_domain = _ascii_domain(domain)
    except UnicodeError:
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
    domain = domain.lower()
    if domain.isascii():
        return domain
    return domain.encode("idna").decode("ascii")
