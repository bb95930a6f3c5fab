"""Orchestration of a publish: scan, read what changed, render, swap the output, remember.

The only module that combines the stages. Order matters for crash safety:
the new output generation is committed first, the store afterwards, so a
crash in between makes the next run redo the work instead of trusting state
that never reached the output folder.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import jinja2

from digest import templates
from digest.errors import ArticleError
from digest.model import Article, Entry, StoredArticle, article_path, site_info
from digest.publish import assets, identity, listings
from digest.publish import scan as scanning
from digest.publish.contents import Contents, Newest
from digest.publish.feeds import feed_id, feed_meta
from digest.publish.fingerprints import config_fingerprint, config_of, scan_fingerprint
from digest.publish.output import Generation, current_generation
from digest.publish.pages import STATIC_FILES, article_page, static_file
from digest.publish.records import (
    Outcome,
    Task,
    entry_of,
    feed_check,
    read_file,
    read_one,
    remember,
    status_of,
)
from digest.publish.signatures import Signatures
from digest.publish.workers import Job, Workers
from digest.settings import Settings
from digest.store.database import Store
from digest.store.timestamps import iso

log = logging.getLogger("digest.publish")
Progress = Callable[[str, int, int], None]  # (phase, done, total)

PARALLEL_FROM = 2000  # articles to read before it pays to start reader processes
_META_KEYS = ("feed_id", "scan_fingerprint", "next_due", "page_signatures", "problems", "published_count")


@dataclass(frozen=True)
class PublishReport:
    published: int  # articles in the output
    new: int
    updated: int
    removed: int
    drafts: int
    scheduled: int
    problems: tuple[ArticleError, ...]
    files_written: int
    files_kept: int
    bytes_written: int
    nothing_changed: bool  # the fast path: no file changed since the last publish
    output_dir: Path


@dataclass(frozen=True)
class CheckReport:
    articles: int
    published: int
    drafts: int
    scheduled: int
    problems: tuple[ArticleError, ...]


def check(settings: Settings, now: datetime, progress: Progress | None = None) -> CheckReport:
    """Read every article and every template; write nothing."""
    env = templates.environment(settings.templates_dir)
    problems: list[ArticleError] = []
    for name in ("index.html", "article.html", "tag.html", "tags.html", "feed.html"):
        try:
            env.get_template(name)
        except jinja2.TemplateError as exc:
            problems.append(ArticleError(f"template {name}", str(exc), "fix the template"))
    found = scanning.scan(settings.articles_dir, settings.max_asset_bytes)
    problems.extend(found.problems)
    meta = feed_meta(settings, feed_id(settings))
    read: list[Article] = []
    for done, source in enumerate(found.sorted_files(), 1):
        try:
            article = read_file(source, settings)
            feed_check(article, remember(article, source, None, now), settings, meta)
            read.append(article)
            problems.extend(ArticleError(source.key, w, "fix the file") for w in article.warnings)
        except ArticleError as exc:
            problems.append(exc)
        if progress:
            progress("check", done, len(found.files))
    unique, duplicates = identity.unique({a.key: (a.id, a.slug) for a in read})
    kept = [a for a in read if a.key in unique]
    problems.extend(duplicates)
    statuses = [status_of(a, now) for a in kept]
    return CheckReport(
        articles=len(found.files), published=statuses.count("published"),
        drafts=statuses.count("draft"), scheduled=statuses.count("scheduled"),
        problems=tuple(problems),
    )


def publish(settings: Settings, store: Store, now: datetime,
            progress: Progress | None = None) -> PublishReport:
    """Publish ARTICLES_DIR into OUTPUT_DIR; see the module docstring for the order of work."""
    run = _Publish.scan(settings, store, now, progress)
    if run.nothing_changed():
        return run.unchanged_report()
    with contextlib.ExitStack() as stack:
        stack.enter_context(store.exclusive("publish"))  # one publisher per shared store
        gen = stack.enter_context(Generation(settings.output_dir))
        workers = stack.enter_context(Workers(run.job(gen)))
        read = run.read_changed(gen, workers)
        shown = run.decide(read)
        bodies = _Bodies(settings, run.found)
        contents = Contents(settings.output_dir, read.current, read.newest.contents, bodies.feed)
        run.write_article_pages(gen, read, shown, bodies)
        run.problems.extend(assets.publish(gen, run.found.assets))
        signatures = run.write_listings_and_feeds(gen, workers, shown.entries, contents)
        files = run.switch_generation(gen, contents)
    run.remember(shown, signatures)
    return run.summary(shown, files)


@dataclass
class _Read:
    """Every article after reading the files that changed: the store's records, brought up to date."""

    stored: dict[str, StoredArticle]  # as remembered before this publish
    current: dict[str, StoredArticle]  # every article: read now, or its record kept
    changed: list[StoredArticle]  # records that differ from the remembered ones
    pages_written: set[str]  # keys whose page a reader wrote
    newest: Newest  # feed contents of the articles read that may be in a feed


@dataclass(frozen=True)
class _Shown:
    """What this publish shows (each id and slug once), and how that differs from the last one."""

    winners: dict[str, StoredArticle]
    changed: list[StoredArticle]  # records to save
    removed: list[str]  # keys to forget: gone, or refused as a duplicate
    new: int
    updated: int
    gone: int
    entries: list[Entry]  # the published articles, oldest first


def unpublished_changes(settings: Settings, store: Store, now: datetime) -> bool:
    """Whether a publish now would change anything: files or settings changed, or
    something scheduled came due, since the last publish (or nothing was published yet)."""
    return not _Publish.scan(settings, store, now, None).nothing_changed()


@dataclass
class _Publish:
    """One publish: what the scan found and what the last publish remembered, then each step."""

    settings: Settings
    store: Store
    now: datetime
    progress: Progress | None
    env: jinja2.Environment
    meta: dict[str, str | None]  # remembered by the last publish (_META_KEYS)
    fid: str
    config: str  # fingerprint of everything but the articles
    found: scanning.Scan
    scan_fp: str
    problems: list[ArticleError]
    clock: _Phases

    @classmethod
    def scan(cls, settings: Settings, store: Store, now: datetime,
             progress: Progress | None) -> _Publish:
        """List the articles folder, and recall what the last publish remembered."""
        env = templates.environment(settings.templates_dir)
        meta = store.get_meta_many(_META_KEYS)
        fid = feed_id(settings, meta["feed_id"])
        config = config_fingerprint(settings, env, fid)
        found = scanning.scan(settings.articles_dir, settings.max_asset_bytes)
        return cls(settings, store, now, progress, env, meta, fid, config, found,
                   scan_fingerprint(config, found.files + found.assets), list(found.problems),
                   _Phases())

    def nothing_changed(self) -> bool:
        """The fast path: an output exists, no file changed, and nothing scheduled came due."""
        due = self.meta["next_due"]
        return (current_generation(self.settings.output_dir) is not None
                and self.meta["scan_fingerprint"] == self.scan_fp
                and (not due or self.now < datetime.fromisoformat(due)))

    def unchanged_report(self) -> PublishReport:
        return PublishReport(
            published=int(self.meta["published_count"] or 0), new=0, updated=0, removed=0,
            drafts=0, scheduled=0, problems=_load_problems(self.meta["problems"]),
            files_written=0, files_kept=0, bytes_written=0, nothing_changed=True,
            output_dir=self.settings.output_dir,
        )

    def job(self, gen: Generation) -> Job:
        return Job(self.settings, self.now, gen.path, gen.previous, feed_meta(self.settings, self.fid))

    def read_changed(self, gen: Generation, workers: Workers) -> _Read:
        """Read the files that changed since the last publish (writing their pages); keep the rest."""
        stored = self.store.load_articles()
        read = _Read(stored, {}, [], set(), Newest(self.settings.feed_max_items))
        tasks = self._to_read(read)
        self.clock.mark("scan and load the store")
        outcomes = workers.map(read_one, tasks, PARALLEL_FROM)
        for done, (task, outcome) in enumerate(zip(tasks, outcomes, strict=True), 1):
            self._report("read", done, len(tasks))
            self._take(read, gen, task, outcome)
        if self.found.unlisted:  # articles in a folder that can't be listed now keep their records
            read.current.update((k, r) for k, r in stored.items()
                                if k not in read.current and self.found.hides(k))
        self.clock.mark(f"read {len(tasks)} files")
        return read

    def _to_read(self, read: _Read) -> list[Task]:
        """The files to read; an unchanged file (same size and time, same config) keeps its record."""
        config_same = config_of(self.meta["scan_fingerprint"]) == self.config
        tasks: list[Task] = []
        for source in self.found.sorted_files():
            old = read.stored.get(source.key)
            if (config_same and old is not None and old.size == source.size
                    and old.mtime_ns == source.mtime_ns):
                read.current[source.key] = old
            else:
                tasks.append((source, old))
        return tasks

    def _take(self, read: _Read, gen: Generation, task: Task, outcome: Outcome) -> None:
        """Take in what reading one file gave: its record and page, or why it was refused."""
        source, old = task
        if isinstance(outcome, ArticleError):
            self.problems.append(outcome)
            if old is not None:
                read.current[source.key] = old  # keep the last good version published
            return
        record, warnings, page, nbytes, content = outcome
        self.problems.extend(ArticleError(source.key, w, "fix the file") for w in warnings)
        gen.count(page is not None and nbytes >= 0, nbytes)
        if page is not None:
            read.pages_written.add(source.key)
        if content is not None:
            read.newest.offer(record, content)
        read.current[source.key] = record
        if record != old:
            read.changed.append(record)

    def decide(self, read: _Read) -> _Shown:
        """Publish what came due; refuse duplicate ids and slugs; count what is new and gone."""
        for key, record in list(read.current.items()):  # scheduled articles due since the last run
            if record.status == "scheduled" and record.published <= self.now:
                read.current[key] = replace(record, status="published")
                read.changed.append(read.current[key])
        unique, duplicates = identity.unique(
            {k: (r.entry_id, r.slug) for k, r in read.current.items()},
            identity.established(read.stored))
        winners = {k: r for k, r in read.current.items() if k in unique}
        self.problems.extend(duplicates)
        new, updated, gone = identity.compare(identity.shown(read.stored),
                                              identity.shown(winners, unique))
        published = sorted((r for r in winners.values() if r.status == "published"),
                           key=lambda r: (r.published, r.key))
        sizes = {assets.output_path(a.key): a.size for a in self.found.assets}
        return _Shown(
            winners=winners,
            changed=[r for r in read.changed if r.key in winners],
            # A refused newcomer is not remembered: it must never count as established later.
            removed=[key for key in read.stored if key not in winners],
            new=new, updated=updated, gone=gone,
            entries=[entry_of(r, self.settings, sizes) for r in published],
        )

    def write_article_pages(self, gen: Generation, read: _Read, shown: _Shown,
                            bodies: _Bodies) -> None:
        """Write each published article's page that no reader wrote and the last output lacks."""
        # Pages of duplicates written while reading: drop them, and rewrite a winner's page
        # that a loser with the same slug may have overwritten.
        clobbered = set()
        for key in read.pages_written - shown.winners.keys():
            page = article_path(read.current[key].slug)
            gen.discard(page)
            clobbered.add(page)
        info = site_info(self.settings)
        for done, entry in enumerate(shown.entries, 1):
            path = article_path(entry.slug)
            self._report("write", done, len(shown.entries))
            if entry.key in read.pages_written and path not in clobbered:
                continue
            if entry.key not in read.pages_written and gen.keep(path):
                continue
            body = bodies.page(entry.key)
            if body is not None or not gen.keep(path):
                gen.write(path, article_page(self.env, info, entry, body or ""))
        self.clock.mark(f"place {len(shown.entries)} article pages")

    def write_listings_and_feeds(self, gen: Generation, workers: Workers, entries: list[Entry],
                                 contents: Contents) -> dict[str, str]:
        """The front page, feeds, archive pages and static files; returns the pages' signatures."""
        signatures = Signatures(self.config, json.loads(self.meta["page_signatures"] or "{}"))
        listings.write(self.env, gen, workers, entries, contents, signatures)
        for name in STATIC_FILES:
            gen.write(name, static_file(self.env, name))
        self.clock.mark("listings and feeds")
        return signatures.new

    def switch_generation(self, gen: Generation, contents: Contents) -> tuple[int, int, int]:
        """Make the new output the published one; returns (files written, kept, bytes written)."""
        gen.commit()
        contents.save()
        files = gen.written, gen.kept, gen.bytes_written
        self.clock.mark("sync and swap")
        return files

    def remember(self, shown: _Shown, signatures: dict[str, str]) -> None:
        """Save the changed records and what the next publish compares with (after the swap)."""
        scheduled = [r.published for r in shown.winners.values() if r.status == "scheduled"]
        self.store.save_articles(shown.changed, shown.removed, {
            "feed_id": self.fid,
            "scan_fingerprint": self.scan_fp,
            "next_due": iso(min(scheduled)) if scheduled else "",
            "page_signatures": json.dumps(signatures, sort_keys=True),
            "problems": _dump_problems(self.problems),
            "published_count": str(len(shown.entries)),
        })
        self.clock.mark("save the store")
        log.debug("publish timings: %s", self.clock)

    def summary(self, shown: _Shown, files: tuple[int, int, int]) -> PublishReport:
        written, kept, nbytes = files
        statuses = [r.status for r in shown.winners.values()]
        return PublishReport(
            published=len(shown.entries), new=shown.new, updated=shown.updated, removed=shown.gone,
            drafts=statuses.count("draft"), scheduled=statuses.count("scheduled"),
            problems=tuple(self.problems), files_written=written, files_kept=kept,
            bytes_written=nbytes, nothing_changed=False, output_dir=self.settings.output_dir,
        )

    def _report(self, phase: str, done: int, total: int) -> None:
        if self.progress and (done % 100 == 0 or done == total):
            self.progress(phase, done, total)


class _Bodies:
    """Article bodies read again: for a page that must be written anew, or the feed content
    of an article neither read now nor kept in the contents pack."""

    def __init__(self, settings: Settings, found: scanning.Scan) -> None:
        self._settings = settings
        self._sources = {f.key: f for f in found.files}

    def page(self, key: str) -> str | None:
        """The article's HTML (links as on its page); None when its file is broken or gone."""
        source = self._sources.get(key)
        if source is None:
            return None
        try:
            return read_file(source, self._settings).body_html
        except ArticleError:
            return None

    def feed(self, key: str) -> str | None:
        return self.page(key)


class _Phases:
    """Wall time per phase, for `--debug` (not a clock of record: only durations)."""

    def __init__(self) -> None:
        self._last = time.perf_counter()
        self._spent: list[str] = []

    def mark(self, phase: str) -> None:
        now = time.perf_counter()
        self._spent.append(f"{phase} {now - self._last:.3f}s")
        self._last = now

    def __str__(self) -> str:
        return ", ".join(self._spent)


def _dump_problems(problems: list[ArticleError]) -> str:
    return json.dumps([[p.path, p.reason, p.hint] for p in problems])


def _load_problems(text: str | None) -> tuple[ArticleError, ...]:
    return tuple(ArticleError(path, reason, hint) for path, reason, hint in json.loads(text or "[]"))
