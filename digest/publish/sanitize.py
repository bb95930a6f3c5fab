"""HTML helpers: sanitizing, absolute URLs, XML-safe text."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from html import escape, unescape
from urllib.parse import urljoin

import nh3

# Characters XML 1.0 forbids (C0 controls except tab, LF, CR; surrogates; U+FFFE/U+FFFF).
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")

MAX_NESTING = 100  # deeper elements lose their tags (not their text) before sanitizing
# A comment, or a start/end tag with its attributes (quoted values may hold '>').
_TAG = re.compile(r"""<!--.*?(?:-->|\Z)|<(/?)([A-Za-z][^\s/>]*)((?:"[^"]*"|'[^']*'|[^'">])*)>""",
                  re.DOTALL)
_VOID = frozenset((
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param",
    "source", "track", "wbr",
))
# Elements whose end tag may be left out: a new one closes an open one of the same name.
_SELF_CLOSING_SIBLINGS = frozenset(("p", "li", "dt", "dd", "tr", "td", "th", "option"))

_ALLOWED_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "del", "dd", "dl", "dt", "em", "figcaption",
    "figure", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd", "li", "mark",
    "ol", "p", "pre", "q", "s", "small", "span", "strong", "sub", "sup", "table", "tbody", "td",
    "tfoot", "th", "thead", "tr", "u", "ul",
}
_ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title", "width", "height"},
    "abbr": {"title"},
    "td": {"colspan", "rowspan", "align"},
    "th": {"colspan", "rowspan", "align", "scope"},
    "ol": {"start"},
    "code": {"class"},
}
_URL_SCHEMES = {"http", "https", "mailto"}


def xml_illegal(text: str) -> list[str]:
    """The distinct XML-illegal characters in text, as U+XXXX names."""
    return sorted({f"U+{ord(ch):04X}" for ch in _XML_ILLEGAL.findall(text)})


def has_xml_illegal(text: str) -> bool:
    """Whether text holds any character XML 1.0 forbids (cheaper than naming them)."""
    return utf8_has_xml_illegal(text.encode("utf-8", "surrogatepass"))


# The bytes of the C0 controls XML forbids, and the UTF-8 forms of U+FFFE and U+FFFF;
# a lone surrogate (surrogatepass) is 0xED then 0xA0-0xBF.
_ILLEGAL_C0 = bytes(c for c in range(0x20) if c not in (0x09, 0x0A, 0x0D))
_SURROGATE = re.compile(rb"\xed[\xa0-\xbf]")


def utf8_has_xml_illegal(data: bytes) -> bool:
    """has_xml_illegal of UTF-8 bytes (lone surrogates encoded as by "surrogatepass"),
    without decoding them: C-speed searches, several times faster than the regex."""
    return (len(data.translate(None, _ILLEGAL_C0)) != len(data)
            or (b"\xef" in data and (b"\xef\xbf\xbe" in data or b"\xef\xbf\xbf" in data))
            or (b"\xed" in data and _SURROGATE.search(data) is not None))


def strip_xml_illegal(text: str) -> str:
    """Text without the characters XML 1.0 forbids: the one cleaner for feed and page values."""
    return _XML_ILLEGAL.sub("", text) if has_xml_illegal(text) else text  # the check is cheaper


def sanitize(html: str) -> str:
    """Allow only harmless markup: no scripts, styles, event handlers or javascript: URLs.

    The result is XML-safe too: character references such as ``&#x1;`` are decoded
    by the sanitizer, so the characters XML forbids are removed after it.
    """
    cleaned: str = nh3.clean(
        bound_nesting(html),
        tags=_ALLOWED_TAGS,
        attributes=_ALLOWED_ATTRIBUTES,
        url_schemes=_URL_SCHEMES,
        link_rel="noopener noreferrer",
    )
    return strip_xml_illegal(cleaned)


# Sanitized HTML (quoted attributes, '"' escaped inside them): a paragraph that holds one
# image and nothing else, the image alone or as a link.
_ATTRIBUTES = r'(?:\s+[A-Za-z][A-Za-z0-9_:-]*(?:="[^"]*")?)*'
_STANDALONE_IMAGE = re.compile(
    rf'<p>\s*(?P<open><a{_ATTRIBUTES}>)?\s*(?P<img><img{_ATTRIBUTES}\s*/?>)\s*(?P<close></a>)?\s*</p>')
_ALT = re.compile(r'\salt="([^"]*)"')


def figures(html: str) -> str:
    """Sanitized HTML in which each image standing alone in its paragraph (or a link's only
    content) and having alt text becomes a figure captioned with that text.

    Images within a line of text stay as they are; so do images without alt text
    (decorative ones).
    """

    def figure(match: re.Match[str]) -> str:
        if (match["open"] is None) != (match["close"] is None):
            return match[0]
        alt = _ALT.search(match["img"])
        caption = " ".join(unescape(alt[1]).split()) if alt else ""
        if not caption:
            return match[0]
        return (f"<figure>{match['open'] or ''}{match['img']}{match['close'] or ''}"
                f"<figcaption>{escape(caption, quote=False)}</figcaption></figure>")

    return _STANDALONE_IMAGE.sub(figure, html) if "<img" in html else html


def bound_nesting(html: str, limit: int = MAX_NESTING) -> str:
    """HTML whose elements nest at most `limit` deep: deeper tags are dropped, text is kept.

    The sanitizer's cost grows with the square of the depth (80,000 nested
    blockquotes took 12 s), so this runs first, in one linear pass over the tags.
    Documents within the limit come back unchanged.
    """
    if html.count("<") <= limit:
        return html  # a tag is dropped only under `limit` open ones, each begun by a '<'
    return _drop_deep(html, limit)


def _drop_deep(html: str, limit: int) -> str:
    open_names: list[tuple[str, bool]] = []  # (name, kept) of the elements still open
    counts: dict[str, int] = {}
    depth = 0  # kept elements open
    drops: list[tuple[int, int]] = []
    for match in _TAG.finditer(html):
        slash, name = match.group(1), match.group(2)
        if name is None:
            continue  # a comment
        name = name.lower()
        if name in _VOID or match.group(3).rstrip().endswith("/"):
            continue
        if not slash:
            if name in _SELF_CLOSING_SIBLINGS and open_names and open_names[-1][0] == name:
                depth -= _pop(open_names, counts)
            keep = depth < limit
            open_names.append((name, keep))
            counts[name] = counts.get(name, 0) + 1
            depth += keep
            if not keep:
                drops.append(match.span())
        elif counts.get(name):
            while open_names[-1][0] != name:
                depth -= _pop(open_names, counts)
            kept = open_names[-1][1]
            depth -= _pop(open_names, counts)
            if not kept:
                drops.append(match.span())
    if not drops:
        return html
    parts, last = [], 0
    for start, end in drops:
        parts.append(html[last:start])
        last = end
    parts.append(html[last:])
    return "".join(parts)


def _pop(open_names: list[tuple[str, bool]], counts: dict[str, int]) -> int:
    name, kept = open_names.pop()
    counts[name] -= 1
    return int(kept)


def absolutize(html: str, page_url: str) -> str:
    """Make every link (href, src, srcset) in sanitized HTML absolute, relative to the page.

    The HTML is parsed, so only attribute values change: text that looks like
    markup, as in a code block, stays as it is. HTML with no link attribute at all
    (most article bodies) is returned as it is: sanitizing it again changes nothing.
    """
    if not has_link_attribute(html):
        return html
    return clean_with_filter(html, functools.partial(absolute_value, page_url))


def has_link_attribute(html: str) -> bool:
    """Whether absolutize has to sanitize this HTML again (no: it returns it as it is)."""
    return " href=" in html or " src=" in html or " srcset=" in html


def absolute_value(page_url: str, tag: str, attribute: str, value: str) -> str | None:
    """absolutize's filter: an attribute's value with its links absolute (None drops it)."""
    try:
        if attribute in ("href", "src"):
            return urljoin(page_url, value.strip())
        if attribute == "srcset":
            return ", ".join(_absolute_candidate(page_url, part) for part in value.split(","))
    except ValueError:
        return None  # not a URL at all (say "http://[x"): drop the link, keep the text
    return value


# One sanitizer pass, two results. The link attributes' values are left out of the HTML
# (a private-use marker stands for each) and filled in afterwards, escaped as the
# sanitizer's serializer (html5ever) escapes attribute values.
_LINK_ATTRIBUTES = frozenset(("href", "src", "srcset"))
_MARKER = re.compile("\ue000([0-9]+)\ue001")
Marked = tuple[str, list[tuple[str, str, str, str]]]  # the HTML, (tag, attribute, read, given)


def escape_attribute(value: str) -> str:
    """An attribute value as the sanitizer writes it between double quotes."""
    return (value.replace("&", "&amp;").replace("\u00a0", "&nbsp;").replace('"', "&quot;")
            .replace("<", "&lt;").replace(">", "&gt;"))


def clean_marked(html: str, attribute_filter: Callable[[str, str, str], str | None]
                 ) -> Marked | None:
    """clean_with_filter(html, attribute_filter) with a marker for each link attribute's
    value, and each such attribute's tag, name, value read and value the filter gave,
    in order; None when the HTML already holds the marker character (or, never seen,
    a marked attribute was left out): then clean_with_filter it is."""
    if "\ue000" in html:
        return None
    values: list[tuple[str, str, str, str]] = []

    def mark(tag: str, attribute: str, value: str) -> str | None:
        given = attribute_filter(tag, attribute, value)
        if given is None or attribute not in _LINK_ATTRIBUTES:
            return given
        values.append((tag, attribute, value, given))
        return f"\ue000{len(values) - 1}\ue001"

    marked = clean_with_filter(html, mark)
    if marked.count("\ue000") != len(values):
        return None
    return marked, values


def fill_marked(marked: str, values: list[str]) -> str:
    """The marked HTML with each marker replaced by its value."""
    return _MARKER.sub(lambda match: escape_attribute(values[int(match[1])]), marked)


def clean_with_filter(html: str, attribute_filter: Callable[[str, str, str], str | None]) -> str:
    """Sanitized HTML again, each attribute value passed through the filter (None drops it)."""
    cleaned: str = nh3.clean(
        html, tags=_ALLOWED_TAGS, attributes=_ALLOWED_ATTRIBUTES, url_schemes=_URL_SCHEMES,
        link_rel="noopener noreferrer", attribute_filter=attribute_filter,
    )
    return cleaned


def _absolute_candidate(page_url: str, candidate: str) -> str:
    url, _, descriptor = candidate.strip().partition(" ")
    return f"{urljoin(page_url, url)} {descriptor.strip()}".strip()


def paragraphs_to_html(blocks: list[tuple[str, str]]) -> str:
    """Render (kind, text) blocks from the plain-text reader as escaped HTML."""
    parts = []
    for kind, text in blocks:
        tag = "h2" if kind == "heading" else "p"
        parts.append(f"<{tag}>{escape(text, quote=False)}</{tag}>")
    return "\n".join(parts)
