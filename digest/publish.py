"""Orchestration of a publish: scan, read what changed, render, swap the output, remember.

The only module that combines the stages. Order matters for crash safety:
the new output generation is committed first, the store afterwards, so a
crash in between makes the next run redo the work instead of trusting state
that never reached the output folder.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import jinja2

from digest import __version__, feeds, site, templates
from digest.article import ID_NAMESPACE, Article, Entry, SourceFile, article_path
from digest.errors import ArticleError, OutputError
from digest.html import absolutize
from digest.output import Generation, current_generation
from digest.reading import read_article
from digest.scan import scan
from digest.settings import Settings
from digest.store import Store, StoredArticle, iso

Progress = Callable[[str, int, int], None]  # (phase, done, total)

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
    read: list[Article] = []
    for done, source in enumerate(found.files, 1):
        try:
            article = _read(source, settings)
            read.append(article)
            problems.extend(ArticleError(source.key, w, "fix the file") for w in article.warnings)
        except ArticleError as exc:
            problems.append(exc)
        if progress:
            progress("check", done, len(found.files))
    kept, duplicates = _drop_duplicates(read)
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

    stored = store.load_articles()
    config_same = meta["scan_fingerprint"] is not None and \
        meta["scan_fingerprint"].split(":", 1)[0] == config
    problems = list(found.problems)
    bodies: dict[str, str] = {}
    current: dict[str, StoredArticle] = {}
    changed: list[StoredArticle] = []
    new = updated = 0
    total = len(found.files)
    for done, source in enumerate(found.files, 1):
        if progress and (done % 100 == 0 or done == total):
            progress("read", done, total)
        old = stored.get(source.key)
        if old is not None and old.size == source.size and old.mtime_ns == source.mtime_ns:
            current[source.key] = old
            continue
        try:
            article = _read(source, settings)
        except ArticleError as exc:
            problems.append(exc)
            if old is not None:
                current[source.key] = old  # keep the last good version published
            continue
        problems.extend(ArticleError(source.key, w, "fix the file") for w in article.warnings)
        bodies[source.key] = article.body_html
        record = _remember(article, source, old, now)
        current[source.key] = record
        changed.append(record)
        if old is None:
            new += record.status == "published"
        elif old.content_hash != record.content_hash or old.status != record.status:
            updated += record.status == "published"

    # Scheduled articles that came due since the last run.
    for key, record in list(current.items()):
        if record.status == "scheduled" and record.published <= now:
            current[key] = replace(record, status="published")
            changed.append(current[key])
            new += 1

    winners, duplicates = _drop_duplicate_records(current)
    problems.extend(duplicates)
    removed = [key for key in stored if key not in current]
    published = sorted((r for r in winners.values() if r.status == "published"),
                       key=lambda r: (r.published, r.key))
    entries = [entry_of(r, settings) for r in published]

    sources = {f.key: f for f in found.files}

    def body_of(entry: Entry) -> str | None:
        """The article's HTML; None when its file is broken now (the last good record stays)."""
        if entry.key not in bodies:
            try:
                bodies[entry.key] = _read(sources[entry.key], settings).body_html
            except ArticleError:
                return None
        return bodies[entry.key]

    signatures: dict[str, str] = json.loads(meta["page_signatures"] or "{}")
    new_signatures: dict[str, str] = {}
    with Generation(settings.output_dir) as gen:
        info = site_info(settings)
        unchanged_keys = {k for k, r in stored.items() if current.get(k) == r} if config_same \
            else set()
        for done, entry in enumerate(entries, 1):
            path = article_path(entry.slug)
            if progress and (done % 100 == 0 or done == len(entries)):
                progress("write", done, len(entries))
            if entry.key in unchanged_keys and entry.key not in bodies and gen.keep(path):
                continue
            body = body_of(entry)
            if body is not None or not gen.keep(path):
                gen.write(path, site.article_page(env, info, entry, body or ""))
        _write_listings(settings, feed_meta(settings, fid), env, gen, entries, body_of,
                        signatures, new_signatures, config)
        for name in site.STATIC_FILES:
            gen.write(name, site.static_file(env, name))
        gen.commit()
        written, kept, nbytes = gen.written, gen.kept, gen.bytes_written

    scheduled = [r.published for r in winners.values() if r.status == "scheduled"]
    store.save_articles(changed, removed, {
        "feed_id": fid,
        "scan_fingerprint": scan_fp,
        "next_due": iso(min(scheduled)) if scheduled else "",
        "page_signatures": json.dumps(new_signatures, sort_keys=True),
        "problems": _dump_problems(problems),
        "published_count": str(len(entries)),
    })
    statuses = [r.status for r in winners.values()]
    return PublishReport(
        published=len(entries), new=new, updated=updated, removed=len(removed),
        drafts=statuses.count("draft"), scheduled=statuses.count("scheduled"),
        problems=tuple(problems), files_written=written, files_kept=kept,
        bytes_written=nbytes, nothing_changed=False, output_dir=settings.output_dir,
    )


def _write_listings(settings: Settings, meta: feeds.FeedMeta, env: jinja2.Environment,
                    gen: Generation,
                    entries: list[Entry], body_of: Callable[[Entry], str | None],
                    old_signatures: dict[str, str], new_signatures: dict[str, str],
                    config: str) -> None:
    """Front page, feeds, and the fixed archive pages (HTML and Atom) of older entries."""
    size = settings.feed_max_items
    info = site_info(settings)
    complete = len(entries) // size  # archive pages hold only full chunks, oldest first

    def archive_url(number: int, ext: str) -> str:
        return settings.url(f"archive/{number}.{ext}")

    for number in range(1, complete + 1):
        chunk = entries[(number - 1) * size: number * size]
        has_newer = number < complete
        signature = _signature(config, chunk, str(has_newer))
        html_path, atom_path = f"archive/{number}.html", f"archive/{number}.atom"
        if old_signatures.get(html_path) == signature and gen.keep(html_path) \
                and gen.keep(atom_path):
            new_signatures[html_path] = signature
            continue
        new_signatures[html_path] = signature
        page = site.PageInfo(
            number=number,
            older_url=archive_url(number - 1, "html") if number > 1 else None,
            newer_url=archive_url(number + 1, "html") if has_newer else info.url,
        )
        gen.write(html_path, site.index_page(env, info, chunk[::-1], page))
        links = feeds.ArchiveLinks(
            prev_archive=archive_url(number - 1, "atom") if number > 1 else None,
            next_archive=archive_url(number + 1, "atom") if has_newer else None,
            current=meta.atom_url,
        )
        items = [feeds.FeedItem(e, None) for e in chunk[::-1]]
        gen.write(atom_path, feeds.atom(meta, items, archive_url(number, "atom"), links,
                                        stylesheet="../feed.xsl"))

    newest = entries[::-1][:size]
    front = site.PageInfo(number=0, newer_url=None,
                          older_url=archive_url(complete, "html") if complete else None)
    gen.write("index.html", site.index_page(env, info, newest, front))
    bodies = [(e, body_of(e)) for e in newest]
    items = [feeds.FeedItem(e, None if b is None else absolutize(b, e.url)) for e, b in bodies]
    links = feeds.ArchiveLinks(prev_archive=archive_url(complete, "atom") if complete else None)
    gen.write("feed.atom", feeds.atom(meta, items, meta.atom_url, links, stylesheet="feed.xsl"))
    gen.write("feed.rss", feeds.rss(meta, items))
    gen.write("feed.json", feeds.json_feed(meta, items))


def _read(source: SourceFile, settings: Settings) -> Article:
    try:
        with open(source.path, "rb") as handle:
            data = handle.read(settings.max_article_bytes + 1)
    except OSError as exc:
        raise ArticleError(source.key, f"cannot read ({exc.strerror})",
                           "check that the file exists and is readable") from exc
    return read_article(source, data, settings.site_timezone, settings.max_article_bytes)


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


def _drop_duplicates(articles: Iterable[Article]) -> tuple[list[Article], list[ArticleError]]:
    kept: list[Article] = []
    problems: list[ArticleError] = []
    ids: dict[str, str] = {}
    slugs: dict[str, str] = {}
    for article in sorted(articles, key=lambda a: a.key):
        clash = _clash(article.key, article.id, article.slug, ids, slugs)
        if clash:
            problems.append(clash)
        else:
            kept.append(article)
    return kept, problems


def _drop_duplicate_records(records: dict[str, StoredArticle]
                            ) -> tuple[dict[str, StoredArticle], list[ArticleError]]:
    kept: dict[str, StoredArticle] = {}
    problems: list[ArticleError] = []
    ids: dict[str, str] = {}
    slugs: dict[str, str] = {}
    for key in sorted(records):
        record = records[key]
        clash = _clash(key, record.entry_id, record.slug, ids, slugs)
        if clash:
            problems.append(clash)
        else:
            kept[key] = record
    return kept, problems


def _clash(key: str, entry_id: str, slug: str, ids: dict[str, str],
           slugs: dict[str, str]) -> ArticleError | None:
    if entry_id in ids:
        return ArticleError(key, f"has the same id as {ids[entry_id]}",
                            "give one of them a different 'id' header")
    if slug.lower() in slugs:
        return ArticleError(key, f"would have the same page as {slugs[slug.lower()]} "
                            f"(slug {slug!r})", "rename one file or set a different 'slug'")
    ids[entry_id] = key
    slugs[slug.lower()] = key
    return None


def _signature(config: str, chunk: list[Entry], extra: str) -> str:
    digest = hashlib.blake2b(config.encode(), digest_size=16)
    digest.update(extra.encode())
    for entry in chunk:
        digest.update(repr(entry).encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def _config_fingerprint(settings: Settings, env: jinja2.Environment, fid: str) -> str:
    parts = [
        __version__, settings.site_url, settings.site_title, settings.site_subtitle,
        settings.site_author, settings.site_language, str(settings.site_timezone),
        fid, str(settings.feed_max_items), str(settings.max_article_bytes),
        str(settings.articles_dir), templates.fingerprint(env),
    ]
    return hashlib.blake2b("\0".join(parts).encode(), digest_size=16).hexdigest()


def _scan_fingerprint(config: str, files: Iterable[SourceFile]) -> str:
    digest = hashlib.blake2b(digest_size=16)
    digest.update("\n".join(f"{f.key}\0{f.size}\0{f.mtime_ns}" for f in files).encode(
        "utf-8", "surrogateescape"))
    return f"{config}:{digest.hexdigest()}"


def _dump_problems(problems: list[ArticleError]) -> str:
    return json.dumps([[p.path, p.reason, p.hint] for p in problems])


def _load_problems(text: str | None) -> tuple[ArticleError, ...]:
    return tuple(ArticleError(path, reason, hint) for path, reason, hint in json.loads(text or "[]"))


def ensure_output_parent(settings: Settings) -> None:
    if not settings.output_dir.parent.is_dir():
        raise OutputError(f"OUTPUT_DIR {settings.output_dir}: its parent folder does not exist",
                          "create the folder or point OUTPUT_DIR elsewhere")
