"""Read one article file into an Article, or raise ArticleError saying why not.

Two formats, chosen by extension:

* ``.txt``: the plain-text format (``date YYYY-MM-DD`` then the lead on the
  same line, optional ``key value`` header lines before it), see
  :mod:`digest.publish.formats.text`;
* ``.md`` / ``.markdown``: Markdown with YAML front matter, see
  :mod:`digest.publish.formats.markdown`.
"""

from __future__ import annotations

import codecs
import hashlib
import os
import re
import stat
from dataclasses import replace
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from digest.errors import ArticleError, shown_path
from digest.model import Article, SourceFile, entry_id
from digest.publish.formats import markdown as markdown_format
from digest.publish.formats import text as text_format
from digest.publish.formats.fields import Fields
from digest.publish.sanitize import (
    has_xml_illegal,
    strip_xml_illegal,
    utf8_has_xml_illegal,
    xml_illegal,
)

TEXT_SUFFIXES = (".txt",)
MARKDOWN_SUFFIXES = (".md", ".markdown")
SUFFIXES = TEXT_SUFFIXES + MARKDOWN_SUFFIXES

HEADLINE_MAX = 100
SUMMARY_MAX = 400

_ABBREVIATIONS = frozenset((
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "inc", "ltd", "co", "corp",
    "gov", "gen", "rep", "sen", "no", "fig", "approx", "dept", "est", "jan", "feb", "mar", "apr",
    "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "e.g", "i.e", "u.s", "u.k", "u.n",
))
_SENTENCE_END = re.compile(r"[.!?][\"'”’)\]]*(?=\s+[\"'“‘(\[]?[A-Z0-9])")
_SLUG_SEGMENT = re.compile(r"[A-Za-z0-9_~-][A-Za-z0-9._~-]*")
SLUG_MAX = 200  # characters in a whole slug
SLUG_SEGMENT_MAX = 100  # characters between two slashes
YEAR_MIN, YEAR_MAX = 1900, 9000  # dates outside break time zone and mail date arithmetic


def _utf16_as_utf8(key: str, data: bytes) -> bytes:
    """A file saved as UTF-16 with its byte order mark (Windows editors' "Unicode"), as
    UTF-8: read like any other article."""
    try:
        return data.decode("utf-16").encode("utf-8")
    except UnicodeDecodeError as exc:
        raise ArticleError(key, f"invalid UTF-16 at byte {exc.start}",
                           "re-save the file as UTF-8") from None


def read_article(source: SourceFile, data: bytes, zone: ZoneInfo, max_bytes: int) -> Article:
    """Parse the bytes of one article file. Raises ArticleError on any problem."""
    if len(data) > max_bytes:
        raise ArticleError(source.key, f"file is {len(data):,} bytes, over the limit of "
                           f"{max_bytes:,}", "split the article or raise MAX_ARTICLE_BYTES")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        data = _utf16_as_utf8(source.key, data)
    if not data.strip():
        raise ArticleError(source.key, "file is empty", "write the article or delete the file")
    if b"\x00" in data:
        raise ArticleError(source.key, "file is binary (it contains NUL bytes), not text",
                           "save it as UTF-8 text, or move it out of the articles folder")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ArticleError(source.key, f"invalid UTF-8 at byte {exc.start} (line {line})",
                           "re-save the file as UTF-8") from None
    warnings: list[str] = []
    bad = xml_illegal(text) if utf8_has_xml_illegal(data) else []  # data: valid UTF-8
    if bad:
        warnings.append(f"removed control characters XML forbids ({', '.join(bad)})")
        text = strip_xml_illegal(text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")

    if source.key.lower().endswith(MARKDOWN_SUFFIXES):
        fields = markdown_format.parse(source.key, text)
    else:
        fields = text_format.parse(source.key, text)
    digest_hash = hashlib.blake2b(data, digest_size=16).hexdigest()
    return xml_safe(build(source.key, fields, zone, digest_hash, tuple(warnings)))


def build(key: str, fields: Fields, zone: ZoneInfo, content_hash: str,
          warnings: tuple[str, ...]) -> Article:
    h = fields.headers
    if "date" not in h or h["date"] in (None, ""):
        raise ArticleError(key, "no date", "start the file with 'date YYYY-MM-DD' "
                           "(Markdown: a 'date: YYYY-MM-DD' line in the front matter)")
    published = to_datetime(key, "date", h["date"], zone)
    updated = to_datetime(key, "updated", h["updated"], zone) if h.get("updated") else None
    if updated is not None and updated < published:
        updated = published
    title = _one_line(str(h["title"])) if h.get("title") else (
        fields.first_heading or headline(fields.lead))
    if not title:
        raise ArticleError(key, "no title and no text to derive one from",
                           "add a 'title' header or a first paragraph")
    summary = _one_line(str(h["summary"])) if h.get("summary") else shorten(fields.lead, SUMMARY_MAX)
    explicit_id = _one_line(str(h["id"])) if h.get("id") else None
    slug = check_slug(key, str(h.get("slug") or key.rsplit(".", 1)[0]).strip("/"),
                      explicit=bool(h.get("slug")))
    author = _one_line(str(h["author"])) if h.get("author") else None
    return Article(
        key=key,
        id=entry_id(key, explicit_id),
        slug=slug,
        title=title,
        published=published,
        updated=updated,
        author=author,
        tags=_tags(h.get("tags")),
        summary=summary,
        body_html=fields.body_html,
        draft=_flag(key, h.get("draft")),
        content_hash=content_hash,
        warnings=warnings,
        enclosure=_one_line(str(h["enclosure"])) if h.get("enclosure") else "",
    )


def xml_safe(article: Article) -> Article:
    """The article without characters XML forbids in any field that feeds and pages show.

    The raw text was cleaned already; this catches what arrived escaped and was
    decoded later: YAML escapes ("\\x01") in the headers, character references
    (``&#x1;``, ``&#xFFFE;``) in the body, its attributes and so its lead.
    """
    fields = (article.title, article.summary, article.author or "", article.id, *article.tags,
              article.body_html)
    if not has_xml_illegal("".join(fields)):  # nearly always: one scan, no sets
        return article
    bad = sorted(set().union(*(xml_illegal(text) for text in fields)))
    title = _one_line(strip_xml_illegal(article.title))
    if not title:
        raise ArticleError(article.key, "the title has only control characters",
                           "write a title with some text")
    return replace(
        article, title=title, summary=_one_line(strip_xml_illegal(article.summary)),
        author=_one_line(strip_xml_illegal(article.author)) or None if article.author else None,
        id=strip_xml_illegal(article.id),
        tags=tuple(t for t in (_one_line(strip_xml_illegal(t)) for t in article.tags) if t),
        body_html=strip_xml_illegal(article.body_html),
        warnings=(*article.warnings,
                  f"removed escaped characters XML forbids ({', '.join(bad)})"),
    )


def to_datetime(key: str, name: str, value: object, zone: ZoneInfo) -> datetime:
    """A timezone-aware datetime from a YAML value or text; naive values get `zone`."""
    if isinstance(value, datetime):
        result = value
    elif isinstance(value, date):
        result = datetime.combine(value, time())
    else:
        text = str(value).strip()
        try:
            if len(text) == 10:
                result = datetime.combine(date.fromisoformat(text), time())
            else:
                result = datetime.fromisoformat(text.replace(" ", "T", 1).replace("Z", "+00:00"))
        except ValueError:
            raise ArticleError(key, f"{name} {text!r} is not a real date",
                               f"write the {name} as YYYY-MM-DD (or YYYY-MM-DDTHH:MM+00:00)"
                               ) from None
    if not YEAR_MIN <= result.year <= YEAR_MAX:
        raise ArticleError(key, f"{name} {value!s:.40} is out of range",
                           f"write a {name} between the years {YEAR_MIN} and {YEAR_MAX}")
    if result.tzinfo is None:
        result = result.replace(tzinfo=zone)
    return result


def check_slug(key: str, slug: str, explicit: bool) -> str:
    """The slug when a page can be published under it (and served), else ArticleError.

    One check for a slug from a 'slug' header and for one made from the file path:
    '/'-separated segments of ASCII letters, digits, '-', '_', '~' and '.', none empty
    and none starting with a dot (the web server refuses such paths), of bounded length.
    """
    problem = slug_problem(slug)
    if problem is None:
        return slug
    shown = shown_path(slug[:60]) + ("…" if len(slug) > 60 else "")
    where = "" if explicit else " (made from the file name)"
    raise ArticleError(key, f"slug '{shown}'{where} {problem}",
                       "use only ASCII letters, digits, '-', '_', '~' and '.' between single "
                       "'/'; no part may start with '.' "
                       + ("(fix the 'slug' header)" if explicit
                          else "(rename the file, or set a 'slug' header)"))


def slug_problem(path: str) -> str | None:
    """Why this path can't be published and served (None: it can): the rules of slugs,
    for slugs and for the paths of files published beside the articles alike."""
    segments = path.split("/")
    if len(path) > SLUG_MAX:
        return f"is {len(path)} characters long, over the limit of {SLUG_MAX}"
    if any(len(segment) > SLUG_SEGMENT_MAX for segment in segments):
        return f"has a part over {SLUG_SEGMENT_MAX} characters long"
    if not all(_SLUG_SEGMENT.fullmatch(segment) for segment in segments):
        return "can't be used in a URL"
    return None


def not_a_regular_file(key: str, mode: int) -> ArticleError:
    kind = ("a folder" if stat.S_ISDIR(mode) else "a FIFO (named pipe)" if stat.S_ISFIFO(mode)
            else "a socket" if stat.S_ISSOCK(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a special file")
    return ArticleError(key, f"is {kind}, not a regular file",
                        "replace it with a text file, or move it out of the articles folder")


def read_source(source: SourceFile, max_bytes: int) -> bytes:
    """The first max_bytes + 1 bytes of an article file; never blocks on a FIFO or device."""
    try:
        fd = os.open(source.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise ArticleError(source.key, f"cannot read ({exc.strerror})",
                           "check that the file exists and is readable") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):  # replaced since the scan
            raise not_a_regular_file(source.key, info.st_mode)
        try:
            return _read_to_end(fd, max_bytes + 1, info.st_size + 1)
        except OSError as exc:
            raise ArticleError(source.key, f"cannot read ({exc.strerror})",
                               "check that the file exists and is readable") from exc
    finally:
        os.close(fd)


def _read_to_end(fd: int, limit: int, size: int) -> bytes:
    """Up to `limit` bytes, to the end of the file, in reads of `size` (the file's size + 1,
    so one read and the one that finds the end): a buffer of the limit (1 MiB) for a
    small file costs more than reading it, and so does a buffered file object."""
    chunks = []
    total = 0
    while total < limit:
        chunk = os.read(fd, min(size, limit - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def headline(lead: str) -> str:
    """The first sentence of the lead, cut at a word boundary when long."""
    sentence = first_sentence(lead)
    if sentence.endswith(".") and not sentence.endswith(".."):
        sentence = sentence[:-1]
    return shorten(sentence, HEADLINE_MAX)


def first_sentence(text: str) -> str:
    text = " ".join(text.split())
    for match in _SENTENCE_END.finditer(text):
        word = text[text.rfind(" ", 0, match.start()) + 1: match.start()]  # the last word
        word = word.lower().strip("(\"'“‘")
        if word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha()) or "." in word:
            continue
        return text[: match.end()]
    return text


def shorten(text: str, limit: int) -> str:
    """Text on one line, at most `limit` characters, cut at a word boundary with '…'."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    if " " in cut:
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:-–—") + "…"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _tags(value: object) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    items = value if isinstance(value, list | tuple) else str(value).split(",")
    tags = (_one_line(str(item)) for item in items)
    return tuple(dict.fromkeys(t for t in tags if t))


def _flag(key: str, value: object) -> bool:
    if value is None or isinstance(value, bool):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("true", "yes", "1", "on"):
        return True
    if text in ("false", "no", "0", "off", ""):
        return False
    raise ArticleError(key, f"draft {value!r} is neither true nor false", "write draft: true")
