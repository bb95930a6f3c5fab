"""Content types of published files, chosen by name and, for feeds, by a look inside.

A fixed table rather than :mod:`mimetypes`, so the answer does not depend on
the machine's ``/etc/mime.types``. Feeds get their registered types:
``*.atom`` is Atom, ``*.rss`` is RSS, ``feed.json`` (or any JSON whose first
bytes name the JSON Feed version URL) is JSON Feed, and a ``*.xml`` file is
Atom or RSS when its root element says so.
"""

from __future__ import annotations

import re

ATOM = "application/atom+xml"
RSS = "application/rss+xml"
JSON_FEED = "application/feed+json"
HTML = "text/html; charset=utf-8"
XSL = "text/xsl; charset=utf-8"
OCTET_STREAM = "application/octet-stream"

_BY_SUFFIX: dict[str, str] = {
    ".atom": ATOM,
    ".rss": RSS,
    ".html": HTML,
    ".htm": HTML,
    ".css": "text/css; charset=utf-8",
    ".xsl": XSL,
    ".xslt": XSL,
    ".xml": "application/xml",
    ".json": "application/json",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".md": "text/markdown; charset=utf-8",
    ".csv": "text/csv; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".avif": "image/avif",
    ".ico": "image/vnd.microsoft.icon",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".pdf": "application/pdf",
    ".webmanifest": "application/manifest+json",
    ".mp3": "audio/mpeg",
    ".ogg": "audio/ogg",
    ".mp4": "video/mp4",
    ".webm": "video/webm",
}

# Types worth compressing: text and the structured formats built on it.
_COMPRESSIBLE = re.compile(r"^(text/|application/([\w.-]+\+)?(xml|json|javascript)\b|image/svg)")

# Leading XML declaration, processing instructions (xml-stylesheet), comments,
# doctype and whitespace, then the root element's name.
_XML_ROOT = re.compile(
    rb"^(?:\xef\xbb\xbf)?(?:\s+|<\?.*?\?>|<!--.*?-->|<!DOCTYPE[^>]*>)*<(?:[\w.-]+:)?([\w.-]+)",
    re.DOTALL,
)
_SNIFF_BYTES = 1024


def content_type(name: str, head: bytes) -> str:
    """The Content-Type for a file called `name` whose first bytes are `head`."""
    lower = name.lower()
    dot = lower.rfind(".")
    suffix = lower[dot:] if dot >= 0 else ""
    if suffix == ".xml":
        match = _XML_ROOT.match(head[:_SNIFF_BYTES])
        root = match.group(1) if match else b""
        if root == b"feed":
            return ATOM
        if root in (b"rss", b"RDF"):
            return RSS
    if suffix == ".json" and (
        lower == "feed.json" or b"jsonfeed.org/version/" in head[:_SNIFF_BYTES]
    ):
        return JSON_FEED
    return _BY_SUFFIX.get(suffix, OCTET_STREAM)


def is_compressible(media_type: str) -> bool:
    """True for types that gzip makes noticeably smaller (text, XML, JSON, SVG)."""
    return _COMPRESSIBLE.match(media_type) is not None
