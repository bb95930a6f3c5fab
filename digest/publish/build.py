"""Orchestration of a publish: scan, read what changed, render, swap the output, remember.

The only module that combines the stages, each in its own module: :mod:`.run` (the
scan and what the last publish remembered), :mod:`.intake` (reading what changed),
:mod:`.decide` (what is shown), :mod:`.placing` (article pages), :mod:`.listings`
and :mod:`.tags` (listing pages and feeds), :mod:`.output` (the generation).
Order matters for crash safety: the new output generation is committed first, the
store afterwards, so a crash in between makes the next run redo the work instead
of trusting state that never reached the output folder.
"""

from __future__ import annotations

import contextlib
import json
import logging
from datetime import datetime

from digest.model import Edition, Entry
from digest.publish import assets, digests, listings
from digest.publish.checking import check as check
from digest.publish.contents import Contents
from digest.publish.decide import Shown, decide
from digest.publish.intake import PARALLEL_FROM as PARALLEL_FROM
from digest.publish.intake import read_changed
from digest.publish.output import Generation
from digest.publish.pages import STATIC_FILES, static_file
from digest.publish.placing import Bodies, write_article_pages
from digest.publish.reports import CheckReport as CheckReport
from digest.publish.reports import Progress as Progress
from digest.publish.reports import PublishReport as PublishReport
from digest.publish.reports import dump_problems
from digest.publish.run import Run
from digest.publish.signatures import Signatures
from digest.publish.workers import Workers
from digest.settings import Settings
from digest.store.database import Store
from digest.store.editions import load_editions
from digest.store.timestamps import iso

log = logging.getLogger("digest.publish")


def publish(settings: Settings, store: Store, now: datetime,
            progress: Progress | None = None) -> PublishReport:
    """Publish ARTICLES_DIR into OUTPUT_DIR; see the module docstring for the order of work."""
    run = Run.scan(settings, store, now, progress)
    if run.nothing_changed():
        return run.unchanged_report()
    with contextlib.ExitStack() as stack:
        stack.enter_context(store.exclusive("publish"))  # one publisher per shared store
        gen = stack.enter_context(Generation(settings.output_dir))
        workers = stack.enter_context(Workers(run.job(gen)))
        read = read_changed(run, gen, workers)
        shown = decide(run, read)
        bodies = Bodies(settings, run.found)
        contents = Contents(settings.output_dir, read.current, read.newest.contents, bodies.page)
        write_article_pages(run, gen, read, shown, bodies)
        run.problems.extend(assets.publish(gen, run.found.assets))
        editions = load_editions(store)  # past digests: their web copies, in the sitemap too
        signatures = _write_listings_and_feeds(run, gen, workers, shown.entries, contents,
                                               editions)
        digests.write(run.env, gen, settings, editions)
        files = _switch_generation(run, gen, contents)
    _remember(run, shown, signatures)
    return _summary(run, shown, files)


def unpublished_changes(settings: Settings, store: Store, now: datetime) -> bool:
    """Whether a publish now would change anything: files or settings changed, or
    something scheduled came due, since the last publish (or nothing was published yet)."""
    return not Run.scan(settings, store, now, None).nothing_changed()


def _write_listings_and_feeds(run: Run, gen: Generation, workers: Workers, entries: list[Entry],
                             contents: Contents, editions: list[Edition]) -> dict[str, str]:
    """The front page, feeds, archive pages, sitemap and static files; returns the pages'
    signatures."""
    signatures = Signatures(run.config, json.loads(run.meta["page_signatures"] or "{}"))
    listings.write(run.env, gen, workers, entries, contents, signatures, editions)
    for name in STATIC_FILES:
        gen.write(name, static_file(run.env, name))
    run.clock.mark("listings and feeds")
    return signatures.new


def _switch_generation(run: Run, gen: Generation, contents: Contents) -> tuple[int, int, int]:
    """Make the new output the published one; returns (files written, kept, bytes written)."""
    gen.commit()
    contents.save()
    files = gen.written, gen.kept, gen.bytes_written
    run.clock.mark("sync and swap")
    return files


def _remember(run: Run, shown: Shown, signatures: dict[str, str]) -> None:
    """Save the changed records and what the next publish compares with (after the swap)."""
    scheduled = [r.published for r in shown.winners.values() if r.status == "scheduled"]
    run.store.save_articles(shown.changed, shown.removed, {
        "feed_id": run.fid,
        "scan_fingerprint": run.scan_fp,
        "next_due": iso(min(scheduled)) if scheduled else "",
        "page_signatures": json.dumps(signatures, sort_keys=True),
        "problems": dump_problems(run.problems),
        "published_count": str(len(shown.entries)),
    })
    run.clock.mark("save the store")
    log.debug("publish timings: %s", run.clock)


def _summary(run: Run, shown: Shown, files: tuple[int, int, int]) -> PublishReport:
    written, kept, nbytes = files
    statuses = [r.status for r in shown.winners.values()]
    return PublishReport(
        published=len(shown.entries), new=shown.new, updated=shown.updated, removed=shown.gone,
        drafts=statuses.count("draft"), scheduled=statuses.count("scheduled"),
        problems=tuple(run.problems), files_written=written, files_kept=kept,
        bytes_written=nbytes, nothing_changed=False, output_dir=run.settings.output_dir,
    )
