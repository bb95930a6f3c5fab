"""One article file -> the store's record of it (and its page, when read by a reader).

Also the way back: the feed entry a record stands for.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from digest.errors import ArticleError
from digest.model import Article, Enclosure, Entry, SourceFile, StoredArticle, article_path
from digest.publish import assets, feeds
from digest.publish.output import place
from digest.publish.pages import article_page
from digest.publish.reading import read_article, read_source
from digest.publish.sanitize import absolutize
from digest.publish.workers import Reader
from digest.settings import Settings

Task = tuple[SourceFile, StoredArticle | None]  # a file to read, and its record if remembered
# The record, the reader's warnings, the page path written (or None), the bytes written
# (-1 when an identical previous page was linked) and the feed content (links made
# absolute) of a published article; or why the file was refused.
Outcome = ArticleError | tuple[StoredArticle, tuple[str, ...], str | None, int, str | None]


def entry_of(stored: StoredArticle, settings: Settings,
             sizes: Mapping[str, int] | None = None) -> Entry:
    """The feed entry of a record; `sizes` (output path -> bytes) gives enclosures' lengths."""
    enclosure = None
    if stored.enclosure:
        enclosure = Enclosure(settings.url(stored.enclosure),
                              (sizes or {}).get(stored.enclosure, 0),
                              assets.media_type(stored.enclosure))
    image = stored.image
    return Entry(
        key=stored.key, id=stored.entry_id, slug=stored.slug,
        url=settings.url(article_path(stored.slug)), title=stored.title,
        published=stored.published, updated=stored.updated,
        author=stored.author or settings.site_author, tags=stored.tags, summary=stored.summary,
        image=image if not image or "://" in image else settings.url(image), enclosure=enclosure,
    )


def read_file(source: SourceFile, settings: Settings) -> Article:
    data = read_source(source, settings.max_article_bytes)
    article = read_article(source, data, settings.site_timezone, settings.max_article_bytes)
    return assets.link_references(article, settings.articles_dir, settings.max_asset_bytes)


def read_with_content(source: SourceFile, settings: Settings) -> tuple[Article, str | None]:
    """read_file, and the article's feed content (its body with links made absolute) when
    the same sanitizer pass gave it, else None: absolutize the body."""
    data = read_source(source, settings.max_article_bytes)
    article = read_article(source, data, settings.site_timezone, settings.max_article_bytes)
    return assets.link_references_absolute(article, settings.articles_dir,
                                           settings.max_asset_bytes,
                                           settings.url(article_path(article.slug)))


def feed_check(article: Article, record: StoredArticle, settings: Settings,
               meta: feeds.FeedMeta) -> None:
    """Raise ArticleError if this article would break a feed (its body as read, links relative)."""
    feeds.check_item(meta, feeds.FeedItem(entry_of(record, settings), article.body_html))


def status_of(article: Article, now: datetime) -> str:
    if article.draft:
        return "draft"
    return "scheduled" if article.published > now else "published"


def remember(article: Article, source: SourceFile, old: StoredArticle | None,
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
        summary=article.summary, status=status_of(article, now), image=article.image,
        enclosure=article.enclosure, references=article.references, warnings=article.warnings,
    )


def read_one(reader: Reader, task: Task) -> Outcome:
    """One article: read it, make its record, and write its page if it is published."""
    source, old = task
    job = reader.job
    try:
        article, content = read_with_content(source, job.settings)
        record = remember(article, source, old, job.now)
        feed_check(article, record, job.settings, job.meta)
        if record.status != "published":
            return record, article.warnings, None, 0, None
        page = article_path(record.slug)
        entry = entry_of(record, job.settings)
        data = article_page(reader.env, reader.site, entry, article.body_html)
        changed = place(job.new_root, job.previous_root, page, data, reader.made)
    except ArticleError as exc:
        return exc
    if content is None:
        content = absolutize(article.body_html, entry.url)
    return record, article.warnings, page, len(data) if changed else -1, content
