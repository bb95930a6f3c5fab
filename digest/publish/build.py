"""Orchestration of a publish: scan, read what changed, render, swap the output, remember.

The only module that combines the stages. Order matters for crash safety:
the new output generation is committed first, the store afterwards, so a
crash in between makes the next run redo the work instead of trusting state
that never reached the output folder.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import multiprocessing
import operator
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from datetime import datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TypeVar

import jinja2

from digest import __version__, templates
from digest.errors import ArticleError, DigestError, shown_path
from digest.model import ID_NAMESPACE, Article, Entry, SourceFile, StoredArticle, article_path
from digest.publish import feeds
from digest.publish import pages as site
from digest.publish.body_cache import BodyCache
from digest.publish.output import Generation, current_generation, place
from digest.publish.reading import read_article, read_source
from digest.publish.sanitize import absolutize
from digest.publish.scan import scan
from digest.settings import Settings
from digest.store.database import Store
from digest.store.timestamps import iso

log = logging.getLogger("digest.publish")
Progress = Callable[[str, int, int], None]  # (phase, done, total)
T = TypeVar("T")
R = TypeVar("R")

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


def feed_id(settings: Settings, remembered: str | None = None) -> str:
    """FEED_ID, else the id remembered from the first publish, else one made from BASE_URL."""
    if settings.feed_id:
        return settings.feed_id
    return remembered or "urn:uuid:" + str(uuid.uuid5(ID_NAMESPACE, "feed:" + settings.site_url))


def site_info(settings: Settings) -> site.SiteInfo:
    return site.SiteInfo(
        title=settings.site_title, subtitle=settings.site_subtitle,
        language=settings.site_language, url=settings.site_url,
        atom_url=settings.url("feed.atom"), rss_url=settings.url("feed.rss"),
        json_url=settings.url("feed.json"),
        subscribe_url=settings.url("subscribe") if settings.subscribe_form else None,
    )


def feed_meta(settings: Settings, fid: str) -> feeds.FeedMeta:
    info = site_info(settings)
    return feeds.FeedMeta(
        feed_id=fid, title=settings.site_title, subtitle=settings.site_subtitle,
        author=settings.site_author, language=settings.site_language, home_url=info.url,
        atom_url=info.atom_url, rss_url=info.rss_url, json_url=info.json_url,
    )


def entry_of(stored: StoredArticle, settings: Settings) -> Entry:
    return Entry(
        key=stored.key, id=stored.entry_id, slug=stored.slug,
        url=settings.url(article_path(stored.slug)), title=stored.title,
        published=stored.published, updated=stored.updated,
        author=stored.author or settings.site_author, tags=stored.tags, summary=stored.summary,
    )


def check(settings: Settings, now: datetime, progress: Progress | None = None) -> CheckReport:
    """Read every article and every template; write nothing."""
    env = templates.environment(settings.templates_dir)
    problems: list[ArticleError] = []
    for name in ("index.html", "article.html"):
        try:
            env.get_template(name)
        except jinja2.TemplateError as exc:
            problems.append(ArticleError(f"template {name}", str(exc), "fix the template"))
    found = scan(settings.articles_dir)
    problems.extend(found.problems)
    meta = feed_meta(settings, feed_id(settings))
    read: list[Article] = []
    for done, source in enumerate(found.sorted_files(), 1):
        try:
            article = _read(source, settings)
            _feed_check(article, _remember(article, source, None, now), settings, meta)
            read.append(article)
            problems.extend(ArticleError(source.key, w, "fix the file") for w in article.warnings)
        except ArticleError as exc:
            problems.append(exc)
        if progress:
            progress("check", done, len(found.files))
    unique, duplicates = _unique({a.key: (a.id, a.slug) for a in read})
    kept = [a for a in read if a.key in unique]
    problems.extend(duplicates)
    statuses = [_status(a, now) for a in kept]
    return CheckReport(
        articles=len(found.files), published=statuses.count("published"),
        drafts=statuses.count("draft"), scheduled=statuses.count("scheduled"),
        problems=tuple(problems),
    )


def publish(settings: Settings, store: Store, now: datetime,
            progress: Progress | None = None) -> PublishReport:
    """Publish ARTICLES_DIR into OUTPUT_DIR; see the module docstring for the order of work."""
    env = templates.environment(settings.templates_dir)
    meta = store.get_meta_many(_META_KEYS)
    fid = feed_id(settings, meta["feed_id"])
    config = _config_fingerprint(settings, env, fid)
    found = scan(settings.articles_dir)
    scan_fp = _scan_fingerprint(config, found.files)
    has_output = current_generation(settings.output_dir) is not None
    due = meta["next_due"]
    if (has_output and meta["scan_fingerprint"] == scan_fp
            and (not due or now < datetime.fromisoformat(due))):
        return PublishReport(
            published=int(meta["published_count"] or 0), new=0, updated=0, removed=0,
            drafts=0, scheduled=0, problems=_load_problems(meta["problems"]),
            files_written=0, files_kept=0, bytes_written=0, nothing_changed=True,
            output_dir=settings.output_dir,
        )

    clock = _Phases()
    with contextlib.ExitStack() as stack:
        stack.enter_context(store.exclusive("publish"))  # one publisher per shared store
        gen = stack.enter_context(Generation(settings.output_dir))
        stored = store.load_articles()
        config_same = meta["scan_fingerprint"] is not None and \
            meta["scan_fingerprint"].split(":", 1)[0] == config
        problems = list(found.problems)
        current: dict[str, StoredArticle] = {}
        changed: list[StoredArticle] = []
        pages_written: set[str] = set()  # keys whose page a reader wrote
        tasks: list[tuple[SourceFile, StoredArticle | None]] = []
        for source in found.sorted_files():
            old = stored.get(source.key)
            if (config_same and old is not None and old.size == source.size
                    and old.mtime_ns == source.mtime_ns):
                current[source.key] = old
            else:
                tasks.append((source, old))
        clock.mark("scan and load the store")
        job = _Job(settings, now, gen.path, gen.previous, feed_meta(settings, fid))
        workers = stack.enter_context(_Workers(job))
        outcomes = workers.map(_process_one, tasks, PARALLEL_FROM)
        for done, ((source, old), outcome) in enumerate(zip(tasks, outcomes, strict=True), 1):
            if progress and (done % 100 == 0 or done == len(tasks)):
                progress("read", done, len(tasks))
            if isinstance(outcome, ArticleError):
                problems.append(outcome)
                if old is not None:
                    current[source.key] = old  # keep the last good version published
                continue
            record, warnings, page, nbytes = outcome
            problems.extend(ArticleError(source.key, w, "fix the file") for w in warnings)
            gen.count(page is not None and nbytes >= 0, nbytes)
            if page is not None:
                pages_written.add(source.key)
            current[source.key] = record
            if record != old:
                changed.append(record)

        if found.unlisted:  # articles in a folder that can't be listed now keep their records
            current.update((k, r) for k, r in stored.items() if k not in current and found.hides(k))
        clock.mark(f"read {len(tasks)} files")
        del tasks, outcomes  # 100,000 of them are worth freeing before the listings
        # Scheduled articles that came due since the last run.
        for key, record in list(current.items()):
            if record.status == "scheduled" and record.published <= now:
                current[key] = replace(record, status="published")
                changed.append(current[key])

        unique, duplicates = _unique({k: (r.entry_id, r.slug) for k, r in current.items()},
                                     _established(stored))
        winners = {k: r for k, r in current.items() if k in unique}
        problems.extend(duplicates)
        # A refused newcomer is not remembered: it must never count as established later.
        removed = [key for key in stored if key not in winners]
        changed = [r for r in changed if r.key in winners]
        new, updated, gone = _compare(_shown(stored), _shown(winners, unique))
        published = sorted((r for r in winners.values() if r.status == "published"),
                           key=lambda r: (r.published, r.key))
        entries = [entry_of(r, settings) for r in published]
        sources = {f.key: f for f in found.files}
        bodies: dict[str, str | None] = {}
        kept_bodies = BodyCache(settings.output_dir)  # sanitized once, kept between publishes

        def body_of(entry: Entry) -> str | None:
            """The article's HTML; None when its file is broken now (its last good record stays)."""
            if entry.key not in bodies:
                # A body kept from an earlier publish also serves an article whose folder
                # can't be listed now (its source is missing; its record is kept).
                bodies[entry.key] = kept_bodies.body(
                    current[entry.key].content_hash,
                    lambda: _made_body(sources[entry.key]) if entry.key in sources else None)
            return bodies[entry.key]

        def _made_body(source: SourceFile) -> tuple[str, str] | None:
            try:
                article = _read(source, settings)
            except ArticleError:
                return None
            return article.content_hash, article.body_html

        # Pages of duplicates written while reading: drop them, and rewrite a winner's page
        # that a loser with the same slug may have overwritten.
        clobbered = set()
        for key in pages_written - winners.keys():
            page = article_path(current[key].slug)
            gen.discard(page)
            clobbered.add(page)
        info = site_info(settings)
        for done, entry in enumerate(entries, 1):
            path = article_path(entry.slug)
            if progress and (done % 100 == 0 or done == len(entries)):
                progress("write", done, len(entries))
            if entry.key in pages_written and path not in clobbered:
                continue
            if entry.key not in pages_written and gen.keep(path):
                continue
            body = body_of(entry)
            if body is not None or not gen.keep(path):
                gen.write(path, site.article_page(env, info, entry, body or ""))

        clock.mark(f"place {len(entries)} article pages")
        signatures: dict[str, str] = json.loads(meta["page_signatures"] or "{}")
        new_signatures: dict[str, str] = {}
        _write_listings(settings, job.meta, env, gen, workers, entries, body_of,
                        signatures, new_signatures, config)
        for name in site.STATIC_FILES:
            gen.write(name, site.static_file(env, name))
        clock.mark("listings and feeds")
        gen.commit()
        kept_bodies.prune()
        written, kept, nbytes = gen.written, gen.kept, gen.bytes_written
        clock.mark("sync and swap")

    scheduled = [r.published for r in winners.values() if r.status == "scheduled"]
    store.save_articles(changed, removed, {
        "feed_id": fid,
        "scan_fingerprint": scan_fp,
        "next_due": iso(min(scheduled)) if scheduled else "",
        "page_signatures": json.dumps(new_signatures, sort_keys=True),
        "problems": _dump_problems(problems),
        "published_count": str(len(entries)),
    })
    clock.mark("save the store")
    log.debug("publish timings: %s", clock)
    statuses = [r.status for r in winners.values()]
    return PublishReport(
        published=len(entries), new=new, updated=updated, removed=gone,
        drafts=statuses.count("draft"), scheduled=statuses.count("scheduled"),
        problems=tuple(problems), files_written=written, files_kept=kept,
        bytes_written=nbytes, nothing_changed=False, output_dir=settings.output_dir,
    )


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


@dataclass(frozen=True)
class _Job:
    """What a reader process needs to read articles and write their pages (picklable)."""

    settings: Settings
    now: datetime
    new_root: Path
    previous_root: Path | None
    meta: feeds.FeedMeta


@dataclass
class _Reader:
    """What reading and rendering need: made per publish (inline) or per reader process.

    Never kept at module level in the publishing process: a publish that fails
    must not leave state (the folders made in its removed generation) to the next.
    """

    job: _Job
    env: jinja2.Environment
    site: site.SiteInfo
    made: set[str] = field(default_factory=set)  # folders created in the new generation

    @classmethod
    def of(cls, job: _Job) -> _Reader:
        return cls(job, templates.environment(job.settings.templates_dir), site_info(job.settings))


_Outcome = ArticleError | tuple[StoredArticle, tuple[str, ...], str | None, int]
_process_reader: _Reader | None = None  # set only in a reader process, which lives one publish

PARALLEL_FROM = 2000  # articles to read before it pays to start reader processes
PARALLEL_PAGES_FROM = 40  # archive pages to render before it pays


class _Workers:
    """Runs a function over many items: inline, or in a pool of processes started lazily.

    Processes are started with "spawn", not "fork": the scheduler and the web
    server run threads in this process, and forking those is unsafe. Each reader
    holds the read end of a pipe whose only write end is here (the lifeline): when
    this process ends, however it ends (SIGKILL too), the readers see EOF and exit.
    """

    def __init__(self, job: _Job) -> None:
        self.job = job
        self.count = min(os.cpu_count() or 1, 4)
        self._pool: ProcessPoolExecutor | None = None
        self._inline: _Reader | None = None
        self._lifeline: tuple[Connection, Connection] | None = None

    def __enter__(self) -> _Workers:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if self._pool is None or self._lifeline is None:
            return
        if exc_type is not None:
            self._lifeline[1].close()  # failed or stopped: readers exit now, queued work or not
        self._pool.shutdown(cancel_futures=True)
        for end in self._lifeline:
            end.close()

    def map(self, function: Callable[[_Reader, T], R], items: list[T],
            parallel_from: int) -> Iterator[R]:
        if self._pool is None and (len(items) < parallel_from or self.count < 2
                                   or not _can_spawn()):
            if self._inline is None:
                self._inline = _Reader.of(self.job)
            return map(functools.partial(function, self._inline), items)
        if self._pool is None:
            # Not max_tasks_per_child: with it, Python 3.11's pool can hang when a worker
            # is replaced (seen here at 100,000 articles).
            self._lifeline = multiprocessing.Pipe(duplex=False)
            self._pool = ProcessPoolExecutor(
                self.count, mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_reader, initargs=(self.job, self._lifeline[0]))
        chunk = max(1, min(200, len(items) // (self.count * 8)))
        try:  # map submits every chunk at once: a reader killed by now breaks the submit
            results = self._pool.map(functools.partial(_in_reader, function), items,
                                     chunksize=chunk)
        except BrokenProcessPool as exc:
            raise _reader_lost() from exc
        return _reported(results)


def _reported(results: Iterator[R]) -> Iterator[R]:
    """The results of reader processes; one that was killed (OOM, a signal) is a message."""
    try:
        yield from results
    except BrokenProcessPool as exc:
        raise _reader_lost() from exc


def _reader_lost() -> DigestError:
    return DigestError("a reader process of the publish ended unexpectedly (killed, or out "
                       "of memory); the previous output is kept",
                       "run `digest publish` again; if it recurs, check the system log "
                       "for the out-of-memory killer")


def _can_spawn() -> bool:
    """Spawned processes re-import __main__: possible from a file or module, not from stdin."""
    main = sys.modules.get("__main__")
    if main is None or getattr(main, "__spec__", None) is not None:
        return True
    path = getattr(main, "__file__", None)
    return path is None or os.path.isfile(path)


def _init_reader(job: _Job, lifeline: Connection) -> None:
    """Start a reader process: its state, and a thread that ends it when the parent ends."""
    global _process_reader
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the group: the parent decides
    threading.Thread(target=_exit_with_parent, args=(lifeline,), daemon=True).start()
    _process_reader = _Reader.of(job)


def _exit_with_parent(lifeline: Connection) -> None:
    with contextlib.suppress(EOFError, OSError):
        lifeline.recv_bytes()  # nothing is ever sent: this returns when the write end closes
    os._exit(1)


def _in_reader(function: Callable[[_Reader, T], R], item: T) -> R:
    assert _process_reader is not None
    return function(_process_reader, item)


def _process_one(reader: _Reader, task: tuple[SourceFile, StoredArticle | None]) -> _Outcome:
    """One article: read it, make its record, and write its page if it is published.

    Returns the record, the reader's warnings, the page path written (or None)
    and the bytes written (-1 when an identical previous page was linked).
    """
    source, old = task
    job = reader.job
    try:
        article = _read(source, job.settings)
        record = _remember(article, source, old, job.now)
        _feed_check(article, record, job.settings, job.meta)
        if record.status != "published":
            return record, article.warnings, None, 0
        page = article_path(record.slug)
        data = site.article_page(reader.env, reader.site, entry_of(record, job.settings),
                                 article.body_html)
        changed = place(job.new_root, job.previous_root, page, data, reader.made)
    except ArticleError as exc:
        return exc
    return record, article.warnings, page, len(data) if changed else -1


def _write_listings(settings: Settings, meta: feeds.FeedMeta, env: jinja2.Environment,
                    gen: Generation, workers: _Workers, entries: list[Entry],
                    body_of: Callable[[Entry], str | None], old_signatures: dict[str, str],
                    new_signatures: dict[str, str], config: str) -> None:
    """Front page, feeds, and the fixed archive pages (HTML and Atom) of older entries."""
    size = settings.feed_max_items
    info = site_info(settings)
    complete = len(entries) // size  # archive pages hold only full chunks, oldest first
    pages: list[_ArchivePage] = []
    for number in range(1, complete + 1):
        chunk = entries[(number - 1) * size: number * size]
        page = _ArchivePage(number, tuple(chunk), has_newer=number < complete)
        signature = _signature(config, chunk, str(page.has_newer))
        new_signatures[page.html_path] = signature
        if old_signatures.get(page.html_path) == signature and gen.keep(page.html_path) \
                and gen.keep(page.atom_path):
            continue
        pages.append(page)
    for placed in workers.map(_render_archive, pages, PARALLEL_PAGES_FROM):
        for changed, nbytes in placed:
            gen.count(changed, nbytes)

    newest = entries[::-1][:size]
    front = site.PageInfo(number=0, newer_url=None,
                          older_url=_archive_url(settings, complete, "html") if complete else None)
    gen.write("index.html", site.index_page(env, info, newest, front))
    bodies = [(e, body_of(e)) for e in newest]
    items = [feeds.FeedItem(e, None if b is None else absolutize(b, e.url)) for e, b in bodies]
    links = feeds.ArchiveLinks(
        prev_archive=_archive_url(settings, complete, "atom") if complete else None)
    gen.write("feed.atom", feeds.atom(meta, items, meta.atom_url, links, stylesheet="feed.xsl"))
    gen.write("feed.rss", feeds.rss(meta, items))
    gen.write("feed.json", feeds.json_feed(meta, items))


@dataclass(frozen=True)
class _ArchivePage:
    number: int  # 1 is the oldest
    entries: tuple[Entry, ...]  # oldest first
    has_newer: bool

    @property
    def html_path(self) -> str:
        return f"archive/{self.number}.html"

    @property
    def atom_path(self) -> str:
        return f"archive/{self.number}.atom"


def _archive_url(settings: Settings, number: int, ext: str) -> str:
    return settings.url(f"archive/{number}.{ext}")


def _render_archive(reader: _Reader, page: _ArchivePage) -> list[tuple[bool, int]]:
    """Write one archive page as HTML and as an RFC 5005 Atom archive document."""
    job, env, info = reader.job, reader.env, reader.site
    settings, n = job.settings, page.number
    newest_first = page.entries[::-1]
    html = site.index_page(env, info, newest_first, site.PageInfo(
        number=n,
        older_url=_archive_url(settings, n - 1, "html") if n > 1 else None,
        newer_url=_archive_url(settings, n + 1, "html") if page.has_newer else info.url,
    ))
    links = feeds.ArchiveLinks(
        prev_archive=_archive_url(settings, n - 1, "atom") if n > 1 else None,
        next_archive=_archive_url(settings, n + 1, "atom") if page.has_newer else None,
        current=job.meta.atom_url,
    )
    atom = feeds.atom(job.meta, [feeds.FeedItem(e, None) for e in newest_first],
                      _archive_url(settings, n, "atom"), links, stylesheet="../feed.xsl")
    return [(place(job.new_root, job.previous_root, path, data, reader.made), len(data))
            for path, data in ((page.html_path, html), (page.atom_path, atom))]


def _read(source: SourceFile, settings: Settings) -> Article:
    data = read_source(source, settings.max_article_bytes)
    return read_article(source, data, settings.site_timezone, settings.max_article_bytes)


def _feed_check(article: Article, record: StoredArticle, settings: Settings,
                meta: feeds.FeedMeta) -> None:
    """Raise ArticleError if this article would break a feed (its body as read, links relative)."""
    feeds.check_item(meta, feeds.FeedItem(entry_of(record, settings), article.body_html))


def _status(article: Article, now: datetime) -> str:
    if article.draft:
        return "draft"
    return "scheduled" if article.published > now else "published"


def _remember(article: Article, source: SourceFile, old: StoredArticle | None,
              now: datetime) -> StoredArticle:
    """The store's record of a freshly read article; `updated` follows content, not the clock."""
    if old is None:
        first_seen, last_changed = now, article.published
    elif old.content_hash == article.content_hash:
        first_seen, last_changed = old.first_seen, old.last_changed
    else:
        first_seen, last_changed = old.first_seen, max(now, article.published)
    updated = article.updated or max(article.published, last_changed)
    return StoredArticle(
        key=article.key, entry_id=article.id, slug=article.slug, size=source.size,
        mtime_ns=source.mtime_ns, content_hash=article.content_hash, first_seen=first_seen,
        last_changed=last_changed, published=article.published, updated=updated,
        title=article.title, author=article.author or "", tags=article.tags,
        summary=article.summary, status=_status(article, now),
    )


def _shown(records: dict[str, StoredArticle], unique: set[str] | None = None) -> dict[str, str]:
    """The articles a publish with these records shows (key -> content hash)."""
    if unique is None:
        unique, _ = _unique({k: (r.entry_id, r.slug) for k, r in records.items()})
    return {k: r.content_hash for k, r in records.items() if k in unique and r.status == "published"}


def _compare(before: dict[str, str], after: dict[str, str]) -> tuple[int, int, int]:
    """(new, updated, removed) between two sets of shown articles."""
    updated = sum(1 for key, digest in after.items() if key in before and before[key] != digest)
    return len(after.keys() - before.keys()), updated, len(before.keys() - after.keys())


def _established(stored: dict[str, StoredArticle]) -> dict[str, tuple[str, str]]:
    """The (entry id, slug) each remembered article was published under."""
    return {k: (r.entry_id, r.slug) for k, r in stored.items()}


def _unique(identities: dict[str, tuple[str, str]],
            established: dict[str, tuple[str, str]] | None = None,
            ) -> tuple[set[str], list[ArticleError]]:
    """Keys that keep their (entry id, slug); one that repeats another's loses.

    An article that keeps the id and slug it was published under wins over a
    newcomer (a new file, or one whose id or slug changed); among equals, path order.
    """
    kept: set[str] = set()
    problems: list[ArticleError] = []
    ids: dict[str, str] = {}
    slugs: dict[str, str] = {}
    old = established or {}
    for key in sorted(identities, key=lambda k: (old.get(k) != identities[k], k)):
        entry_id, slug = identities[key]
        clash = _clash(key, entry_id, slug, ids, slugs)
        if clash:
            problems.append(clash)
        else:
            kept.add(key)
    return kept, problems


def _clash(key: str, entry_id: str, slug: str, ids: dict[str, str],
           slugs: dict[str, str]) -> ArticleError | None:
    if entry_id in ids:
        return ArticleError(key, f"has the same id as {shown_path(ids[entry_id])}, which keeps it; "
                            f"{shown_path(key)} is not published",
                            f"give {shown_path(key)} a different 'id' header")
    if slug.lower() in slugs:
        return ArticleError(key, f"would have the same page as {shown_path(slugs[slug.lower()])} "
                            f"(slug {slug!r}), which keeps it; {shown_path(key)} is not published",
                            f"rename {shown_path(key)} or set a different 'slug' in it")
    ids[entry_id] = key
    slugs[slug.lower()] = key
    return None


def _signature(config: str, chunk: list[Entry], extra: str) -> str:
    """What a listing page shows, hashed: equal signatures mean byte-identical pages."""
    digest = hashlib.blake2b(config.encode(), digest_size=16)
    digest.update(extra.encode())
    for e in chunk:
        # Canonical text, not repr(): a date read back from the store has another tzinfo type.
        fields = (e.key, e.id, e.slug, e.url, e.title, e.published.isoformat(),
                  e.updated.isoformat(), e.author, "\x1f".join(e.tags), e.summary)
        digest.update("\x1e".join(fields).encode("utf-8", "surrogatepass") + b"\x1d")
    return digest.hexdigest()


def _config_fingerprint(settings: Settings, env: jinja2.Environment, fid: str) -> str:
    parts = [
        __version__, settings.site_url, settings.site_title, settings.site_subtitle,
        settings.site_author, settings.site_language, str(settings.site_timezone),
        fid, str(settings.feed_max_items), str(settings.max_article_bytes),
        str(settings.articles_dir), templates.fingerprint(env), str(settings.subscribe_form),
    ]
    return hashlib.blake2b("\0".join(parts).encode(), digest_size=16).hexdigest()


def _scan_fingerprint(config: str, files: tuple[SourceFile, ...]) -> str:
    """Changes when any file is added, removed, resized or touched (and with the config).

    Taken over the files in directory order: an unchanged folder lists in the
    same order, and a different order only costs a full check, never a missed
    change. Built from C-level sums and one join rather than a line per file:
    this is most of the work of a publish in which nothing changed. The
    position weights make two files' opposite changes count, not cancel out.
    """
    sizes = [f.size for f in files]
    mtimes = [f.mtime_ns for f in files]
    weights = range(1, len(files) + 1)
    digest = hashlib.blake2b(digest_size=16)
    digest.update("\0".join([f.key for f in files]).encode("utf-8", "surrogateescape"))
    digest.update(repr((sum(sizes), sum(mtimes), sum(map(operator.mul, weights, sizes)),
                        sum(map(operator.mul, weights, mtimes)))).encode())
    return f"{config}:{digest.hexdigest()}"


def _dump_problems(problems: list[ArticleError]) -> str:
    return json.dumps([[p.path, p.reason, p.hint] for p in problems])


def _load_problems(text: str | None) -> tuple[ArticleError, ...]:
    return tuple(ArticleError(path, reason, hint) for path, reason, hint in json.loads(text or "[]"))
