"""Read one article file into an Article, or raise ArticleError saying why not.

Two formats, chosen by extension:

* ``.txt``: the plain-text format (``date YYYY-MM-DD`` then the lead on the
  same line, optional ``key value`` header lines before it), see
  :mod:`digest.text_format`;
* ``.md`` / ``.markdown``: Markdown with YAML front matter, see
  :mod:`digest.markdown_format`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from digest.article import Article, SourceFile, entry_id
from digest.errors import ArticleError
from digest.html import strip_xml_illegal, xml_illegal

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
_SLUG_SAFE = re.compile(r"^[A-Za-z0-9._~/-]+$")


@dataclass(frozen=True)
class Fields:
    """What a format reader found; reading.build turns it into an Article."""

    headers: dict[str, object]
    lead: str  # plain text of the first paragraph
    body_html: str
    first_heading: str | None = None


def read_article(source: SourceFile, data: bytes, zone: ZoneInfo, max_bytes: int) -> Article:
    """Parse the bytes of one article file. Raises ArticleError on any problem."""
    from digest import markdown_format, text_format

    if len(data) > max_bytes:
        raise ArticleError(source.key, f"file is {len(data):,} bytes, over the limit of "
                           f"{max_bytes:,}", "split the article or raise MAX_ARTICLE_BYTES")
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
    bad = xml_illegal(text)
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
    slug = str(h.get("slug") or key.rsplit(".", 1)[0]).strip("/")
    if not _SLUG_SAFE.match(slug) or ".." in slug.split("/"):
        raise ArticleError(key, f"slug {slug!r} can't be used in a URL",
                           "use only letters, digits, '-', '_', '.' and '/' in the slug "
                           "(or rename the file)")
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
    )


def xml_safe(article: Article) -> Article:
    """The article without characters XML forbids in any field that feeds and pages show.

    The raw text was cleaned already; this catches what arrived escaped and was
    decoded later: YAML escapes ("\\x01") in the headers, character references
    (``&#x1;``, ``&#xFFFE;``) in the body, its attributes and so its lead.
    """
    fields = (article.title, article.summary, article.author or "", article.id, *article.tags,
              article.body_html)
    bad = sorted(set().union(*(xml_illegal(text) for text in fields)))
    if not bad:
        return article
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
    if result.tzinfo is None:
        result = result.replace(tzinfo=zone)
    return result


def headline(lead: str) -> str:
    """The first sentence of the lead, cut at a word boundary when long."""
    sentence = first_sentence(lead)
    if sentence.endswith(".") and not sentence.endswith(".."):
        sentence = sentence[:-1]
    return shorten(sentence, HEADLINE_MAX)


def first_sentence(text: str) -> str:
    text = " ".join(text.split())
    for match in _SENTENCE_END.finditer(text):
        word = text[: match.start()].rsplit(" ", 1)[-1].lower().strip("(\"'“‘")
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
