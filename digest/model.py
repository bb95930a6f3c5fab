"""The values that flow between stages, and the status values every layer shares.

A source file and the article read from it; what the store keeps of an article;
a digest item and edition. Statuses are StrEnums: stored and shown as their
values ("published", "pending", ...), so they compare equal to those strings.
"""

from __future__ import annotations

import functools
import hashlib
import re
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from digest.settings import Settings

# Namespace of digest's path-derived entry ids. Never change it: every entry id
# of every installation is derived from it.
ID_NAMESPACE = uuid.UUID("6f1c8a52-3b7e-5d0a-9e43-2c1f0d8b7a61")
_NOT_SLUG = re.compile(r"[^a-z0-9]+")


class ArticleStatus(StrEnum):
    PUBLISHED = "published"
    DRAFT = "draft"
    SCHEDULED = "scheduled"  # published later than now


class EditionStatus(StrEnum):
    SENDING = "sending"  # open: deliveries left to try
    DONE = "done"
    PREVIEW = "preview"  # never stored: what the next edition would be


class DeliveryStatus(StrEnum):
    """pending (``claimed_until`` then means "not before") -> sending (claimed) -> sent | failed
    | skipped (unsubscribed meanwhile); unknown (the reply to the end of data was lost: tried
    once more) -> unconfirmed (lost again: never sent again)."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    SKIPPED = "skipped"
    UNKNOWN = "unknown"
    UNCONFIRMED = "unconfirmed"


class SubscriberStatus(StrEnum):
    SUBSCRIBED = "subscribed"  # gets the digest
    PENDING = "pending"  # signed up on the web, awaiting the double opt-in confirmation
    UNSUBSCRIBED = "unsubscribed"  # left; kept so no import subscribes the address again
    BOUNCED = "bounced"  # the server refused it for good (or deferred it for days): skipped


class Cadence(StrEnum):
    """How often a subscriber gets mail: with every edition, or once a week (WEEKLY_DAY)."""

    EVERY = "every"
    WEEKLY = "weekly"


class RunOutcome(StrEnum):
    """How the last run of a scheduled job ended (table ``job_runs``)."""

    RUNNING = "running"  # started, not finished: still going, or the process died
    OK = "ok"
    PROBLEMS = "problems"  # finished, but some articles or deliveries did not go through
    FAILED = "failed"  # an error stopped the job
    STOPPED = "stopped"  # the service was asked to stop mid-run
    SKIPPED = "skipped"  # missed by more than MISFIRE_GRACE_TIME
    NEVER = "never"  # no run yet; the row only holds covered_until


class SourceFile(NamedTuple):
    """An article file found under ARTICLES_DIR, before it is read.

    A NamedTuple rather than a frozen dataclass: a scan makes one per file and
    the nothing-changed publish is measured against the cost of a bare stat.
    """

    key: str  # path relative to ARTICLES_DIR, with forward slashes: the article's identity
    path: str  # absolute path on disk
    size: int
    mtime_ns: int


@dataclass(frozen=True, slots=True)
class Article:
    """One article, read and validated. Dates are timezone-aware."""

    key: str
    id: str
    slug: str
    title: str
    published: datetime
    updated: datetime | None  # an explicit `updated` header; otherwise the store decides
    author: str | None
    tags: tuple[str, ...]
    summary: str  # plain text
    body_html: str  # sanitized HTML; links may be relative to the article page
    draft: bool
    content_hash: str
    warnings: tuple[str, ...] = ()
    image: str = ""  # the first image: an output path ("articles/a/b.png") or an absolute URL
    enclosure: str = ""  # output path of the audio or video file it names (front matter)
    # Paths under ARTICLES_DIR of the published files its links and enclosure name.
    references: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Entry:
    """An article as published: what feeds, pages and the digest show."""

    key: str
    id: str
    slug: str
    url: str  # absolute URL of the article page
    title: str
    published: datetime
    updated: datetime
    author: str
    tags: tuple[str, ...]
    summary: str
    image: str = ""  # absolute URL of the first image, or ""
    enclosure: Enclosure | None = None


@dataclass(frozen=True, slots=True)
class Enclosure:
    """An audio or video file an article names, as feeds announce it."""

    url: str  # absolute
    length: int  # bytes
    type: str  # MIME type


@dataclass(frozen=True, slots=True)
class StoredArticle:
    """What the store keeps of one article file between runs."""

    key: str
    entry_id: str
    slug: str
    size: int
    mtime_ns: int
    content_hash: str
    first_seen: datetime
    last_changed: datetime
    published: datetime
    updated: datetime
    title: str
    author: str
    tags: tuple[str, ...]
    summary: str
    status: str  # an ArticleStatus value
    image: str = ""  # as Article.image
    enclosure: str = ""  # as Article.enclosure
    references: tuple[str, ...] = ()  # as Article.references: a publish re-reads the
    # article when one of them is gone, so its page, image and warnings follow
    warnings: tuple[str, ...] = ()  # what reading it warned of; a publish re-reads an
    # article with warnings, so they are reported until fixed


@dataclass(frozen=True)
class DigestItem:
    """One article as the digest shows it (a snapshot taken when the edition was made)."""

    slug: str
    title: str
    summary: str
    author: str
    published: datetime
    image: str = ""  # the article's first image: an output path or an absolute URL

    @classmethod
    def of(cls, article: StoredArticle) -> DigestItem:
        return cls(slug=article.slug, title=article.title, summary=article.summary,
                   author=article.author, published=article.published, image=article.image)


@dataclass(frozen=True)
class Edition:
    """One digest edition: its number, the articles it carries and how many it goes to."""

    id: int
    uid: str
    status: EditionStatus
    created_at: datetime
    items: tuple[DigestItem, ...]
    recipient_count: int


def entry_id(key: str, explicit: str | None) -> str:
    """The permanent entry id: an explicit id, else one derived from the path alone.

    It never depends on the site URL, title, date or text, so readers never
    see an article as new again after any of those change.
    """
    if explicit:
        if ":" in explicit:
            return explicit  # already an IRI (tag:, urn:, https:)
        return "urn:uuid:" + uuid5(ID_NAMESPACE, "id:" + explicit)
    return "urn:uuid:" + uuid5(ID_NAMESPACE, "path:" + key)


def uuid5(namespace: uuid.UUID, name: str) -> str:
    """``str(uuid.uuid5(namespace, name))`` without making UUID objects (a third of the cost)."""
    digest = bytearray(hashlib.sha1(namespace.bytes + name.encode("utf-8"),
                                    usedforsecurity=False).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # the RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@functools.lru_cache(maxsize=4096)  # a site has few tags, each on many articles
def tag_slug(tag: str) -> str:
    """The URL name of a tag: one for every spelling that differs only in case, accents,
    spaces or punctuation ('Plain Text', 'plain text', 'plain-text' are one tag)."""
    text = tag.replace("+", " plus ").replace("#", " sharp ")
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    slug = _NOT_SLUG.sub("-", folded).strip("-")[:80].strip("-")
    if slug:
        return slug
    key = unicodedata.normalize("NFKC", " ".join(tag.casefold().split()))
    return "tag-" + hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=6).hexdigest()


def tag_path(tag: str, ext: str = "html") -> str:
    """Where a tag's page (html) or feed (atom, json) lives inside the output folder."""
    return f"tags/{tag_slug(tag)}.{ext}"


def article_path(slug: str) -> str:
    """Where an article's page lives inside the output folder (and under BASE_URL)."""
    return f"articles/{slug}.html"


DIGESTS_INDEX = "digests/index.html"  # the list of past digest editions


def digest_path(number: int) -> str:
    """Where the web copy of digest edition `number` lives (the mail links to it)."""
    return f"digests/{number}.html"


@dataclass(frozen=True)
class SiteInfo:
    """What the site's pages (published and served) show about the site itself."""

    title: str
    subtitle: str
    language: str
    url: str  # absolute URL of the front page, with a trailing slash
    atom_url: str
    rss_url: str
    json_url: str
    subscribe_url: str | None = None  # the sign-up form's target; None: no form
    digests_url: str | None = None  # the past digests (when DIGEST_FROM is set); None: no link


def site_info(settings: Settings) -> SiteInfo:
    return SiteInfo(
        title=settings.site_title, subtitle=settings.site_subtitle,
        language=settings.site_language, url=settings.site_url,
        atom_url=settings.url("feed.atom"), rss_url=settings.url("feed.rss"),
        json_url=settings.url("feed.json"),
        subscribe_url=settings.url("subscribe") if settings.subscribe_form else None,
        digests_url=settings.url(DIGESTS_INDEX) if settings.digest_from is not None else None,
    )
