"""The ASGI application that answers requests for published files.

GET and HEAD only (other methods on an existing file get 405), conditional
requests (If-None-Match, else If-Modified-Since) answered 304, gzip for
clients that accept it, a redirect from ``/x`` to ``/x/`` for folders, and a
plain 404 page for everything else. A browser that asks for a feed (``Accept``
prefers ``text/html``) gets the page published beside it (``feed.atom`` ->
``feed.html``); feed readers keep getting the feed. Every request is logged as one line on
the ``digest.serve`` logger.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from dataclasses import replace
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import unquote_plus

from digest.web.content_types import ATOM, RSS
from digest.web.files import PAGE_POLICY, Headers, OutputFiles, Redirect, StaticFile

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

logger = logging.getLogger("digest.serve")

NOT_FOUND_PAGE = (
    b"<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
    b"<title>Not found</title></head>\n<body><h1>Not found</h1>\n"
    b"<p>There is nothing at this address.</p></body></html>\n"
)
# Tuples, as the header lists of files are: shared by every response, changed by none.
_NOT_FOUND_HEADERS: Headers = (
    (b"content-type", b"text/html; charset=utf-8"),
    (b"content-length", str(len(NOT_FOUND_PAGE)).encode()),
    (b"x-content-type-options", b"nosniff"),
    *PAGE_POLICY,
)
_NOT_ALLOWED_BODY = b"Method not allowed: use GET or HEAD.\n"
_NOT_ALLOWED_HEADERS: Headers = (
    (b"content-type", b"text/plain; charset=utf-8"),
    (b"content-length", str(len(_NOT_ALLOWED_BODY)).encode()),
    (b"allow", b"GET, HEAD"),
)
_CHUNK = 256 * 1024
_ACCEPT_CACHE_SIZE = 256
_FEEDS = (ATOM, RSS)


def redact_query(query: str) -> str:
    """A query string with each ``token`` value replaced by ``[redacted]``.

    Unsubscribe, confirm and manage links carry a signed token that acts for its
    address (a manage token never expires): whoever reads it in a log could use
    it. The name is compared as the routes read it (percent-decoded, any case).
    """
    parts = query.split("&")
    for index, part in enumerate(parts):
        name, equals, value = part.partition("=")
        if equals and value and unquote_plus(name).strip().lower() == "token":
            parts[index] = f"{name}=[redacted]"
    return "&".join(parts)


def log_access(scope: Scope, status: int, size: int) -> None:
    """One line per request: client, request line as sent, status, body bytes."""
    if not logger.isEnabledFor(logging.INFO):
        return
    client = scope.get("client")
    address = f"{client[0]}:{client[1]}" if client else "-"
    raw = scope.get("raw_path") or scope["path"].encode("utf-8", "backslashreplace")
    target = raw.decode("ascii", "backslashreplace")
    if scope.get("query_string"):
        target += "?" + redact_query(scope["query_string"].decode("ascii", "backslashreplace"))
    logger.info(
        '%s "%s %s HTTP/%s" %d %d',
        address, scope["method"], target, scope.get("http_version", "1.1"), status, size,
    )


def _weighted(value: bytes) -> Iterator[tuple[bytes, float]]:
    """The items of an Accept or Accept-Encoding value with their q (1.0 when absent)."""
    for part in value.lower().split(b","):
        item, _, params = part.partition(b";")
        q = 1.0
        for param in params.split(b";"):
            key, _, number = param.partition(b"=")
            if key.strip() == b"q":
                try:
                    q = float(number.strip())
                except ValueError:
                    q = 0.0
        yield item.strip(), q


def accepts_gzip(value: bytes) -> bool:
    """True when an Accept-Encoding value allows gzip (explicitly or by ``*``), q > 0."""
    gzip_q: float | None = None
    star_q: float | None = None
    for coding, q in _weighted(value):
        if coding in (b"gzip", b"x-gzip"):
            gzip_q = q if gzip_q is None else max(gzip_q, q)
        elif coding == b"*":
            star_q = q
    if gzip_q is not None:
        return gzip_q > 0
    return star_q is not None and star_q > 0


def prefers_html(value: bytes) -> bool:
    """True for a browser's Accept: text/html wanted, no feed type named (q > 0)."""
    html = feed = False
    for kind, q in _weighted(value):
        if q <= 0:
            continue
        if kind in (b"text/html", b"application/xhtml+xml"):
            html = True
        elif kind in (b"application/atom+xml", b"application/rss+xml"):
            feed = True
    return html and not feed


def not_modified(item: StaticFile, if_none_match: bytes | None, since: bytes | None) -> bool:
    """RFC 9110 13.2.2: If-None-Match decides when present, else If-Modified-Since."""
    if if_none_match is not None:
        if if_none_match == item.etag or if_none_match == item.gzip_etag:
            return True
        for tag in if_none_match.split(b","):
            tag = tag.strip()
            if tag == b"*" or item.matches_etag(tag):
                return True
        return False
    if since is not None:
        if since == item.last_modified:
            return True
        try:
            moment = parsedate_to_datetime(since.decode("latin-1"))
        except (TypeError, ValueError, IndexError):
            return False
        if moment.tzinfo is None:
            return False
        return item.mtime <= moment.timestamp()
    return False


def _vary_accept(headers: Headers) -> Headers:
    varies = [value for name, value in headers if name == b"vary"]
    rest = tuple((name, value) for name, value in headers if name != b"vary")
    return (*rest, (b"vary", b", ".join([*varies, b"Accept"])))


class StaticApp:
    """ASGI app serving the files of an :class:`OutputFiles`."""

    def __init__(self, files: OutputFiles) -> None:
        self.files = files
        self._accepts: dict[bytes, bool] = {}
        self._browsers: dict[bytes, bool] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        found = self.files.find(scope["path"], scope.get("raw_path"))
        method = scope["method"]
        if type(found) is StaticFile and (method == "GET" or method == "HEAD"):
            await self._file(scope, send, found)
        elif found is None:
            await self._fixed(scope, send, 404, _NOT_FOUND_HEADERS, NOT_FOUND_PAGE)
        elif method != "GET" and method != "HEAD":
            await self._fixed(scope, send, 405, _NOT_ALLOWED_HEADERS, _NOT_ALLOWED_BODY)
        elif isinstance(found, Redirect):
            location = found.location
            if scope.get("query_string"):
                location += b"?" + scope["query_string"]
            headers = ((b"location", location), (b"content-length", b"0"))
            await self._fixed(scope, send, 301, headers, b"")

    async def _fixed(
        self, scope: Scope, send: Send, status: int, headers: Headers, body: bytes
    ) -> None:
        if scope["method"] == "HEAD":
            body = b""
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        log_access(scope, status, len(body))

    async def _file(self, scope: Scope, send: Send, item: StaticFile) -> None:
        if_none_match = since = accept = media = None
        for name, value in scope["headers"]:
            if name == b"if-none-match":
                if_none_match = value if if_none_match is None else if_none_match + b"," + value
            elif name == b"if-modified-since":
                since = value
            elif name == b"accept-encoding":
                accept = value
            elif name == b"accept":
                media = value
        if media is not None and item.content_type in _FEEDS and self._browser(media):
            item = self._feed_page(item)
        headers, gzip_headers = item.headers, item.gzip_headers
        if item.browser_headers is not None and media is not None and self._browser(media):
            headers, gzip_headers = item.browser_headers, item.browser_gzip_headers
        use_gzip = (
            item.gzip_headers is not None and accept is not None and self._gzip_ok(accept)
        )
        if (if_none_match is not None or since is not None) and not_modified(
            item, if_none_match, since
        ):
            headers = (
                item.gzip_not_modified_headers
                if use_gzip and item.gzip_not_modified_headers is not None
                else item.not_modified_headers
            )
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            log_access(scope, 304, 0)
            return
        if item.body is None:
            await self._stream(scope, send, item, headers)
            return
        if use_gzip and gzip_headers is not None and item.gzip_body is not None:
            headers, body = gzip_headers, item.gzip_body
        else:
            body = item.body
        if scope["method"] == "HEAD":
            body = b""
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        log_access(scope, 200, len(body))

    def _feed_page(self, feed: StaticFile) -> StaticFile:
        """The page published beside a feed for people (feed.atom -> feed.html), if any.

        Its header lists gain ``Vary: Accept``: the same URL answers Atom to feed readers."""
        stem = feed.relative.rpartition(".")[0]
        page = self.files.find("/" + stem + ".html")
        if type(page) is not StaticFile:
            return feed
        gzip, gzip_304 = page.gzip_headers, page.gzip_not_modified_headers
        return replace(page, headers=_vary_accept(page.headers),
                       gzip_headers=None if gzip is None else _vary_accept(gzip),
                       not_modified_headers=_vary_accept(page.not_modified_headers),
                       gzip_not_modified_headers=None if gzip_304 is None
                       else _vary_accept(gzip_304))

    def _browser(self, accept: bytes) -> bool:
        known = self._browsers.get(accept)
        if known is None:
            known = prefers_html(accept)
            if len(self._browsers) >= _ACCEPT_CACHE_SIZE:
                self._browsers.clear()
            self._browsers[accept] = known
        return known

    def _gzip_ok(self, accept: bytes) -> bool:
        known = self._accepts.get(accept)
        if known is None:
            known = accepts_gzip(accept)
            if len(self._accepts) >= _ACCEPT_CACHE_SIZE:
                self._accepts.clear()
            self._accepts[accept] = known
        return known

    async def _stream(
        self, scope: Scope, send: Send, item: StaticFile, headers: Headers
    ) -> None:
        """Send a file too large to keep in memory, if it is still the version described."""
        try:
            fd = os.open(item.real_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            await self._fixed(scope, send, 404, _NOT_FOUND_HEADERS, NOT_FOUND_PAGE)
            return
        try:
            if not self.files.is_current(item, os.fstat(fd)):
                await self._fixed(scope, send, 404, _NOT_FOUND_HEADERS, NOT_FOUND_PAGE)
                return
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            if scope["method"] == "HEAD":
                await send({"type": "http.response.body", "body": b""})
                log_access(scope, 200, 0)
                return
            offset = 0
            while offset < item.size:
                want = min(_CHUNK, item.size - offset)
                chunk = await asyncio.to_thread(os.pread, fd, want, offset)
                if not chunk:
                    raise RuntimeError(f"{item.real_path} shrank while being sent")
                offset += len(chunk)
                await send(
                    {"type": "http.response.body", "body": chunk, "more_body": offset < item.size}
                )
            log_access(scope, 200, offset)
        finally:
            os.close(fd)
