"""The plain-text article format.

    title Optional title line               <- optional `key value` header lines
    date 2024-03-20 The lead paragraph ...   <- the date, then the lead on the same line

    A Section Heading                        <- short, alone, no closing punctuation

    More paragraphs, separated by blank lines.

Known header keys: title, date, updated, author, tags, id, slug, summary, draft, enclosure
(an audio or video file beside the article, e.g. ``enclosure episode.mp3``).
"""

from __future__ import annotations

import re

from digest.errors import ArticleError
from digest.publish.formats.fields import Fields
from digest.publish.sanitize import paragraphs_to_html

HEADER_KEYS = ("title", "date", "updated", "author", "tags", "id", "slug", "summary", "draft",
               "enclosure")
_HEADER = re.compile(r"^(" + "|".join(HEADER_KEYS) + r")(?:[ \t]+(.*))?$")
_DATE_LINE = re.compile(r"^(\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2})?(?:Z|[+-]\d{2}:?\d{2})?)?)"
                        r"(?:[ \t]+(.*))?$")
_BLANK_LINE = re.compile(r"\n[ \t]*\n")
HEADING_MAX = 80
_CLOSING = tuple(".!?:;,…\"'”’)")


def parse(key: str, text: str) -> Fields:
    text = text.lstrip()
    headers: dict[str, object] = {}
    lead_start: str | None = None
    index = 0  # header lines read
    start = 0  # where line `index` starts in text
    while start <= len(text):  # the lines one by one: only the first few are headers
        end = text.find("\n", start)
        if end < 0:
            end = len(text)
        match = _HEADER.match(text[start:end].strip())
        if not match:
            break
        name, value = match.group(1), (match.group(2) or "").strip()
        index += 1
        start = end + 1
        if name == "date":
            date_match = _DATE_LINE.match(value)
            if not date_match:
                raise ArticleError(key, f"line {index}: 'date {value[:30]}' does not start with "
                                   "a date", "write 'date YYYY-MM-DD' followed by the lead")
            headers["date"] = date_match.group(1)
            if date_match.group(2):
                lead_start = date_match.group(2)
                break
        else:
            if not value:
                raise ArticleError(key, f"line {index}: header '{name}' has no value",
                                   f"write '{name} <value>' or remove the line")
            headers[name] = value
    if "date" not in headers:
        raise ArticleError(key, "no 'date YYYY-MM-DD' line before the text",
                           "start the file with 'date YYYY-MM-DD' and the lead paragraph")
    rest = text[start:]
    if lead_start is not None:
        rest = lead_start + "\n" + rest
    blocks = _blocks(rest)
    if not blocks:
        raise ArticleError(key, "has a date but no text", "write at least one paragraph")
    lead = blocks[0][1]
    return Fields(headers=headers, lead=lead, body_html=paragraphs_to_html(blocks))


def _blocks(text: str) -> list[tuple[str, str]]:
    """Split into ('p' | 'heading', text) blocks at blank lines."""
    blocks: list[tuple[str, str]] = []
    for chunk in _BLANK_LINE.split(text.strip()):
        chunk_lines = [line for line in map(str.strip, chunk.split("\n")) if line]
        if not chunk_lines:
            continue
        joined = " ".join(chunk_lines)
        kind = "heading" if blocks and len(chunk_lines) == 1 and _is_heading(joined) else "p"
        blocks.append((kind, joined))
    return blocks


def _is_heading(line: str) -> bool:
    return (len(line) <= HEADING_MAX and not line.endswith(_CLOSING)
            and any(ch.isalpha() for ch in line) and len(line.split()) <= 12)
