"""Bounces that arrive later: returned messages applied to the subscriber list.

Each message is read by :func:`digest.mail.dsn.parse_report`; its recipient
is named only by a VERP token this installation signed (BOUNCE_ADDRESS,
:mod:`digest.mail.verp`), never guessed from the report's text, so a forged
report cannot bounce or unsubscribe someone else. Then:

* permanent failure -> the subscriber is ``bounced``;
* temporary failure -> counted (bounces + 1, the report kept as last bounce);
* complaint (ARF) -> ``unsubscribed``;
* anything else, or no valid token -> counted as unrecognised, left alone.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from digest.errors import ConfigError
from digest.mail.dsn import Report, ReportError, parse_report
from digest.mail.verp import VerpError, parse_token, recipient_key
from digest.settings import Settings
from digest.store.database import Store
from digest.store.edition_reports import edition_recipients
from digest.store.returned import record_returned

log = logging.getLogger("digest.mail")


@dataclass(frozen=True)
class Outcome:
    source: str  # file name, or "stdin"
    result: str  # bounced | counted | unsubscribed | unrecognised | unmatched | unreadable
    address: str | None = None
    detail: str = ""


ACTED = ("bounced", "counted", "unsubscribed")  # results that changed a subscriber


@dataclass
class ImportSummary:
    outcomes: list[Outcome] = field(default_factory=list)

    def counts(self) -> Counter[str]:
        return Counter(o.result for o in self.outcomes)


def check_bounce_settings(settings: Settings) -> tuple[str, str]:
    if not settings.bounce_address or not settings.secret_key:
        raise ConfigError("BOUNCE_ADDRESS and SECRET_KEY are needed to read bounces",
                          "set BOUNCE_ADDRESS=bounces@your.domain (digest mail then goes out "
                          "with bounces+<token>@your.domain as envelope sender) and SECRET_KEY")
    return settings.bounce_address, settings.secret_key


def import_messages(settings: Settings, store: Store, messages: Iterable[tuple[str, bytes]],
                    now: datetime) -> ImportSummary:
    """Apply each (source, raw message); one store transaction per message."""
    bounce_address, secret = check_bounce_settings(settings)
    summary = ImportSummary()
    for source, data in messages:
        summary.outcomes.append(apply_message(store, source, data, bounce_address, secret, now))
    return summary


def apply_message(store: Store, source: str, data: bytes, bounce_address: str, secret: str,
                  now: datetime) -> Outcome:
    """Read one returned message and apply it to its subscriber (one transaction)."""
    outcome = _apply(store, source, data, bounce_address, secret, now)
    log.info("%s: %s %s %s", source, outcome.result, outcome.address or "", outcome.detail)
    return outcome


def _apply(store: Store, source: str, data: bytes, bounce_address: str, secret: str,
           now: datetime) -> Outcome:
    try:
        report = parse_report(data, bounce_address)
    except ReportError as exc:
        return Outcome(source, "unreadable", None, exc.message)
    if report.kind == "unrecognised":
        return Outcome(source, "unrecognised")
    address, edition = _recipient(store, report, secret)
    if address is None:
        return Outcome(source, "unmatched", None,
                       f"{report.describe()} (no valid bounce token for a known delivery)")
    status = record_returned(store, address, edition, now, report.kind, report.describe())
    if status is None:
        return Outcome(source, "unmatched", address, "no longer on the list")
    result = {"permanent": "bounced", "temporary": "counted",
              "complaint": "unsubscribed"}[report.kind]
    return Outcome(source, result, address, report.describe())


def _recipient(store: Store, report: Report, secret: str) -> tuple[str | None, int | None]:
    """The one recipient named by the report's valid tokens (several different: none), and
    the edition of the delivery it names (several: none)."""
    found: set[str] = set()
    editions: set[int] = set()
    for token in report.tokens:
        try:
            parsed = parse_token(secret, token)
        except VerpError:
            continue
        edition = edition_recipients(store, parsed.edition)
        if edition is None:
            continue
        uid, recipients = edition
        named = {r for r in recipients if recipient_key(uid, r) == parsed.key}
        if named:
            editions.add(parsed.edition)
        found.update(named)
    if len(found) != 1:
        return None, None
    return found.pop(), editions.pop() if len(editions) == 1 else None
