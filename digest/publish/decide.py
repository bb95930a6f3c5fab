"""Deciding what this publish shows: what came due is published, duplicate ids and slugs
are refused (the established article keeps them), and what is new, updated and gone
is counted."""

from __future__ import annotations

from dataclasses import dataclass, replace

from digest.model import Entry, StoredArticle
from digest.publish import assets, identity
from digest.publish.intake import Read
from digest.publish.records import entry_of
from digest.publish.run import Run


@dataclass(frozen=True)
class Shown:
    """What this publish shows (each id and slug once), and how that differs from the last one."""

    winners: dict[str, StoredArticle]
    changed: list[StoredArticle]  # records to save
    removed: list[str]  # keys to forget: gone, or refused as a duplicate
    new: int
    updated: int
    gone: int
    entries: list[Entry]  # the published articles, oldest first


def decide(run: Run, read: Read) -> Shown:
    """Publish what came due; refuse duplicate ids and slugs; count what is new and gone."""
    for key, record in list(read.current.items()):  # scheduled articles due since the last run
        if record.status == "scheduled" and record.published <= run.now:
            read.current[key] = replace(record, status="published")
            read.changed.append(read.current[key])
    unique, duplicates = identity.unique(
        {k: (r.entry_id, r.slug) for k, r in read.current.items()},
        identity.established(read.stored))
    winners = {k: r for k, r in read.current.items() if k in unique}
    run.problems.extend(duplicates)
    new, updated, gone = identity.compare(identity.shown(read.stored),
                                          identity.shown(winners, unique))
    published = sorted((r for r in winners.values() if r.status == "published"),
                       key=lambda r: (r.published, r.key))
    sizes = {assets.output_path(a.key): a.size for a in run.found.assets}
    return Shown(
        winners=winners,
        changed=[r for r in read.changed if r.key in winners],
        # A refused newcomer is not remembered: it must never count as established later.
        removed=[key for key in read.stored if key not in winners],
        new=new, updated=updated, gone=gone,
        entries=[entry_of(r, run.settings, sizes) for r in published],
    )
