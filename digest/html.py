"""HTML helpers: sanitizing, absolute URLs, XML-safe text."""

from __future__ import annotations

import re
from html import escape
from urllib.parse import urljoin

import nh3

# Characters XML 1.0 forbids (C0 controls except tab, LF, CR; surrogates; U+FFFE/U+FFFF).
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_URL_ATTR = re.compile(r'\b(href|src)="([^"]*)"')

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


def xml_illegal(text: str) -> list[str]:
    """The distinct XML-illegal characters in text, as U+XXXX names."""
    return sorted({f"U+{ord(ch):04X}" for ch in _XML_ILLEGAL.findall(text)})


def strip_xml_illegal(text: str) -> str:
    return _XML_ILLEGAL.sub("", text)


def sanitize(html: str) -> str:
    """Allow only harmless markup: no scripts, styles, event handlers or javascript: URLs."""
    return nh3.clean(
        html,
        tags=_ALLOWED_TAGS,
        attributes=_ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer",
    )


def absolutize(html: str, page_url: str) -> str:
    """Make every href/src in sanitized HTML absolute, relative to the page's URL."""

    def repl(match: re.Match[str]) -> str:
        url = match.group(2)
        if url.startswith("#"):
            return f'{match.group(1)}="{page_url}{url}"'
        return f'{match.group(1)}="{escape(urljoin(page_url, _unescape_attr(url)))}"'

    return _URL_ATTR.sub(repl, html)


def _unescape_attr(value: str) -> str:
    return value.replace("&amp;", "&").replace("&quot;", '"').replace("&lt;", "<") \
        .replace("&gt;", ">").replace("&#39;", "'")


def paragraphs_to_html(blocks: list[tuple[str, str]]) -> str:
    """Render (kind, text) blocks from the plain-text reader as escaped HTML."""
    parts = []
    for kind, text in blocks:
        tag = "h2" if kind == "heading" else "p"
        parts.append(f"<{tag}>{escape(text, quote=False)}</{tag}>")
    return "\n".join(parts)
