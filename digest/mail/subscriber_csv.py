"""The subscriber list as CSV: what `subscribers export` writes and `subscribers import` reads.

Columns (:data:`COLUMNS`): email, name, status, topics, cadence, subscribed_at
(when the address was added, ISO 8601), bounces. A file that starts with
exactly this header row is read as this format (comma separated, quoted as
Excel does); any other file goes to :func:`digest.addresses.read_address_file`.

Reading back keeps the status: an import never subscribes an address the
file lists as ``unsubscribed`` or ``bounced``; such addresses not yet known
are recorded with that status (so a later import keeps them out), and
``pending`` rows (never confirmed) are skipped. subscribed_at and bounces are
for reading; an import does not restore them. Topics are tag slugs separated
by spaces (empty: everything), cadence ``every`` or ``weekly``; an import sets
them on the addresses it subscribes or records.

A cell that starts with ``=``, ``+``, ``-``, ``@`` or ``'`` gets a ``'`` in
front, so a spreadsheet does not run it as a formula; reading removes it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TextIO

from digest.addresses import clean_name, normalize_address, read_address_file
from digest.errors import SubscriberError
from digest.mail.choices import cadence_from_text, topics_from_text
from digest.mail.subscribers import subscribe_many
from digest.model import SubscriberStatus
from digest.store import subscribers as stored
from digest.store.database import Store
from digest.store.subscribers import Choices, Subscriber, SubscribeReport

COLUMNS = ("email", "name", "status", "topics", "cadence", "subscribed_at", "bounces")
HEADER = ",".join(COLUMNS)
_FORMULA = ("=", "+", "-", "@", "'")
_STATUSES = {status.value: status for status in SubscriberStatus}


@dataclass(frozen=True)
class Row:
    """One subscriber read from a file: status None when the file has no status column."""

    line: int
    address: str
    name: str | None
    status: SubscriberStatus | None = None
    choices: Choices | None = None  # None: the file has no such columns


@dataclass(frozen=True)
class ImportReport:
    subscribed: SubscribeReport
    recorded: tuple[str, ...] = ()  # new addresses recorded unsubscribed or bounced
    left: tuple[str, ...] = ()  # listed unsubscribed or bounced, already known: left as they are
    skipped_pending: tuple[str, ...] = ()


def write_csv(subscribers: Iterable[Subscriber], out: TextIO) -> int:
    """Write the header and one row per subscriber; how many rows."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    count = 0
    for s in subscribers:
        writer.writerow([_cell(s.address), _cell(s.name or ""), s.status.value,
                         " ".join(s.topics), s.cadence.value,
                         s.created_at.isoformat(), str(s.bounces)])
        count += 1
    return count


def read_subscriber_file(path: Path) -> list[Row]:
    """Rows of an export file, or the addresses of any file `read_address_file` takes."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError):
        text = ""  # read_address_file says what is wrong
    if text.split("\n", 1)[0].rstrip("\r") != HEADER:
        return [Row(line.line, line.address, line.name) for line in read_address_file(path)]
    rows: list[Row] = []
    reader = csv.reader(io.StringIO(text, newline=""))
    next(reader)
    try:
        for cells in reader:
            where = f"{path} line {reader.line_num}"
            if not any(cells):
                continue
            if len(cells) != len(COLUMNS):
                raise SubscriberError(f"{where}: {len(cells)} columns, not {len(COLUMNS)}",
                                      f"keep the columns of the header: {HEADER}")
            status = _STATUSES.get(cells[2])
            if status is None:
                raise SubscriberError(f"{where}: unknown status {cells[2]!r}",
                                      "use one of " + ", ".join(_STATUSES))
            choices = Choices(topics_from_text(cells[3].replace(" ", ","), f"{where}: topics"),
                              cadence_from_text(cells[4], f"{where}: cadence"))
            rows.append(Row(reader.line_num, normalize_address(_uncell(cells[0]), where),
                            clean_name(_uncell(cells[1])), status, choices))
    except csv.Error as exc:
        raise SubscriberError(f"{path} line {reader.line_num}: not valid CSV ({exc})",
                              "check the quotes on that line") from exc
    return rows


def import_rows(store: Store, rows: Iterable[Row], now: datetime, *, source: str,
                resubscribe: bool = False) -> ImportReport:
    """Subscribe the rows without a status or `subscribed`; record the others as above."""
    wanted: list[tuple[str, str | None]] = []
    others: dict[str, tuple[str | None, SubscriberStatus]] = {}
    pending: list[str] = []
    choices: dict[str, Choices] = {}
    for row in rows:
        if row.choices is not None:
            choices.setdefault(row.address, row.choices)
        if row.status in (None, SubscriberStatus.SUBSCRIBED):
            wanted.append((row.address, row.name))
        elif row.status == SubscriberStatus.PENDING:
            pending.append(row.address)
        else:
            others.setdefault(row.address, (row.name, row.status))
    report = subscribe_many(store, wanted, now, source=source, resubscribe=resubscribe,
                            choices=choices)
    recorded = stored.record_new(store, others, now, source=source, choices=choices)
    return ImportReport(report, recorded,
                        tuple(a for a in others if a not in set(recorded)), tuple(pending))


def _cell(text: str) -> str:
    return "'" + text if text.startswith(_FORMULA) else text


def _uncell(text: str) -> str:
    return text[1:] if text.startswith("'") else text
