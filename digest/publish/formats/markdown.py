"""Markdown with YAML front matter (the Jekyll / Hugo / Pelican convention).

    ---
    title: Hello
    date: 2024-05-01
    tags: [news, local]
    ---
    The body, in CommonMark.

Front-matter keys: title, date, updated, author, tags, summary, id, slug, draft, enclosure
(an audio or video file beside the article, e.g. ``enclosure: episode.mp3``).
"""

from __future__ import annotations

import re
from html import unescape

import yaml
from markdown_it import MarkdownIt
from markdown_it.token import Token

from digest.errors import ArticleError
from digest.publish.formats.fields import Fields
from digest.publish.sanitize import figures, sanitize

_FRONT = re.compile(r"\A---[ \t]*\n(.*?\n)?(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.DOTALL)
_TAG = re.compile(r"<[^>]+>")


FRONT_MATTER_MAX = 64 * 1024  # characters between the '---' lines
VALUE_MAX = 4000  # characters in one value (a title, a summary, one tag)
DEPTH_MAX = 8  # nested lists and mappings


class _Refused(Exception):
    """Front matter this reader will not expand: an anchor or alias, too deep, too long."""


class _Loader(yaml.SafeLoader):
    """SafeLoader that leaves dates as text, so digest parses them and names bad ones.

    It refuses anchors and aliases outright (front matter never needs them, and
    nested aliases expand exponentially: nine levels took 2.2 GB), nesting deeper
    than DEPTH_MAX and scalars longer than VALUE_MAX, before constructing anything.
    """

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise _Refused("uses a YAML anchor or alias ('&' or '*')",
                           "write each value out; front matter does not support them")
        if isinstance(event, yaml.ScalarEvent) and len(event.value) > VALUE_MAX:
            raise _Refused(f"has a value of {len(event.value):,} characters, over the limit of "
                           f"{VALUE_MAX:,}", "shorten it; put long text in the body")
        self._depth += 1
        try:
            if self._depth > DEPTH_MAX:
                raise _Refused(f"nests lists or mappings more than {DEPTH_MAX} deep",
                               "use plain 'key: value' lines and simple lists")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}



class _FastLoader(yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader):  # type: ignore[misc]
    """libyaml's parser with the same resolvers, for front matter :func:`_simple` admits."""


_FastLoader.yaml_implicit_resolvers = _Loader.yaml_implicit_resolvers
# One `key: value` or `key: [a, b]` per line of words, digits and a few punctuation marks:
# no anchor, alias, tag, quote, block scalar, mapping or nesting, so nothing _Loader
# refuses and nothing the two parsers read differently (checked by a property test).
_WORD = r"[^\W_](?:[\w .;/()+-]|:(?! |$))*"  # a list item
_TEXT = r"[^\W_](?:[\w .,;/()+-]|:(?! |$))*"  # a value: commas too
_SIMPLE_LINE = re.compile(rf"[A-Za-z_][A-Za-z0-9_-]*:(?: {_TEXT}| \[{_WORD}(?:, {_WORD})*\]|)")
_NOT_SIMPLE = frozenset("\t\r")


def _simple(front: str) -> bool:
    return not _NOT_SIMPLE.intersection(front) and all(
        not line or (len(line) <= VALUE_MAX and _SIMPLE_LINE.fullmatch(line))
        for line in front.split("\n"))


def load_front(front: str) -> object:
    """The front matter's YAML (libyaml's parser when the lines are simple, else _Loader)."""
    if _simple(front):
        try:
            return yaml.load(front, Loader=_FastLoader)  # noqa: S506 - a SafeLoader
        except yaml.YAMLError:
            pass  # _Loader raises it again, with the message it always gives
    return yaml.load(front, Loader=_Loader)  # noqa: S506


_md = MarkdownIt("commonmark", {"html": True, "linkify": False, "typographer": False}) \
    .enable(["table", "strikethrough"])


def parse(key: str, text: str) -> Fields:
    text = text.lstrip("\n")
    match = _FRONT.match(text)
    if not match:
        raise ArticleError(key, "no YAML front matter",
                           "start the file with a '---' line, then 'date: YYYY-MM-DD' and "
                           "'title: ...', then another '---' line")
    front = match.group(1) or ""
    if len(front) > FRONT_MATTER_MAX:
        raise ArticleError(key, f"front matter is {len(front):,} characters long, over the limit "
                           f"of {FRONT_MATTER_MAX:,}", "shorten it; put long text in the body")
    try:
        headers = load_front(front) or {}
    except _Refused as exc:
        reason, hint = exc.args
        raise ArticleError(key, f"front matter {reason}", hint) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 2}" if mark is not None else ""
        raise ArticleError(key, f"front matter is not valid YAML{where}",
                           "check quotes and colons; quote titles that contain ': '") from None
    if not isinstance(headers, dict):
        raise ArticleError(key, "front matter is not a set of 'key: value' lines",
                           "write one 'key: value' per line between the '---' lines")
    body = text[match.end():]
    env: dict[str, object] = {}  # parsed once: the tokens give the HTML, the lead, the heading
    tokens = _md.parse(body, env)
    # a lone image with alt text becomes a figure
    html = figures(sanitize(_md.renderer.render(tokens, _md.options, env)))
    lead = ""
    first_heading = None
    for i, token in enumerate(tokens):
        if token.type == "heading_open" and first_heading is None and i + 1 < len(tokens):
            first_heading = _plain(tokens[i + 1].content)
        if token.type == "paragraph_open" and not lead and i + 1 < len(tokens):
            lead = _plain(inline_html(tokens[i + 1], env))
    if not lead and not headers.get("summary") and not headers.get("title"):
        raise ArticleError(key, "has no text", "write at least one paragraph below the front matter")
    return Fields(headers={str(k).lower(): v for k, v in headers.items()}, lead=lead,
                  body_html=html, first_heading=first_heading)


def inline_html(token: Token, env: dict[str, object]) -> str:
    """``_md.renderInline(token.content)`` of a paragraph's inline token, from the children
    the document's parse gave it: the same tokens, unless the document defines link
    references (renderInline does not see them), and then it is parsed again as before."""
    if "references" in env or token.children is None:
        return str(_md.renderInline(token.content))
    return str(_md.renderer.render([token], _md.options, {}))


def _plain(html: str) -> str:
    return " ".join(unescape(_TAG.sub("", html)).split())
