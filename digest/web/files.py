"""Published files as ready-to-send HTTP representations, cached while unchanged on disk.

:class:`OutputFiles` answers "what is at this URL path?" with a
:class:`StaticFile`, a :class:`Redirect` (a folder asked for without its
trailing slash) or ``None`` (not found, or refused).

Small files are held in memory with their gzip form, ETag and prepared header
lists. Before a cached file is served, one ``lstat`` of its path under the
output folder (following the folder's symlink to the current generation) must
still show the same regular file: device, inode, size and modification time.
That check is made once per file per event-loop iteration and shared by the
requests handled until the next iteration starts; each of those was read from
its connection before the check was made (a request read later is queued
behind the reset), so a file changed on disk, or a new generation swapped in with a changed file, is
served fresh to every request that arrives after the change, while files
hard-linked unchanged into a new generation keep their cache entry and ETag.
Anything not cached goes the slow way: resolve the output folder's symlink and
the path again, check it stays inside, then read.

Larger files are not held: their representation carries the metadata and
the request streams them from disk after checking the open file is the same.

A feed that names an XSL stylesheet (``<?xml-stylesheet ...?>``, as
``feed.atom`` does) also gets *browser* header lists that label it
``application/xml``: browsers show ``application/atom+xml`` as plain text and
apply the stylesheet only to XML types. Feed readers get the registered type;
both variants carry ``Vary: Accept``.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import os
import stat
from dataclasses import dataclass, field
from email.utils import formatdate
from urllib.parse import quote

from digest.web.content_types import ATOM, RSS, content_type, is_compressible
from digest.web.paths import INDEX, relative_path, resolve_inside

# Tuples: a StaticFile's header lists are sent with every response for it, so no
# response (or middleware) may change them in place.
Headers = tuple[tuple[bytes, bytes], ...]
Version = tuple[int, int, int, int]

MAX_CACHED_FILE = 1 << 20
CACHE_BUDGET = 64 << 20
_MAX_URLS = 4096
_GZIP_MIN = 256
_CACHE_CONTROL = b"no-cache"
_STYLESHEET = b"<?xml-stylesheet"
_STYLESHEET_SNIFF = 1024
_BROWSER_TYPE = b"application/xml"
# Published pages are never framed (clickjacking of the sign-up form) and run no
# script; sources of styles and images stay free, so a site previewed on
# another host than BASE_URL keeps its style sheet. templates/base.html repeats
# what a <meta> can for servers that send no such header.
CONTENT_SECURITY_POLICY = b"script-src 'none'; object-src 'none'; base-uri 'none'; " \
    b"frame-ancestors 'none'"
PAGE_POLICY: Headers = ((b"content-security-policy", CONTENT_SECURITY_POLICY),
                        (b"x-frame-options", b"DENY"))
# Browsers treat an XSL style sheet as script (CSP: script-src governs XSLT), so a
# feed that names one may load it from the site itself; still nothing else.
STYLED_FEED_POLICY: Headers = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.replace(b"script-src 'none'",
                                                                 b"script-src 'self'")),
    (b"x-frame-options", b"DENY"))


def version_of(st: os.stat_result) -> Version:
    """What must stay equal for a cached file to still be current."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


@dataclass(frozen=True, slots=True)
class Redirect:
    """A folder asked for without the trailing slash: send the client to `location`."""

    location: bytes


@dataclass(frozen=True, slots=True, eq=False)
class StaticFile:
    """One version of one published file, with everything a response needs."""

    relative: str
    path: str
    real_path: str
    version: Version
    content_type: str
    etag: bytes
    gzip_etag: bytes | None
    last_modified: bytes
    mtime: int
    size: int
    body: bytes | None
    gzip_body: bytes | None
    headers: Headers = field(repr=False)
    gzip_headers: Headers | None = field(repr=False)
    not_modified_headers: Headers = field(repr=False)
    gzip_not_modified_headers: Headers | None = field(repr=False)
    # Feeds with an XSL stylesheet, for browsers: the same, labelled application/xml.
    browser_headers: Headers | None = field(default=None, repr=False)
    browser_gzip_headers: Headers | None = field(default=None, repr=False)

    @property
    def compressible(self) -> bool:
        return self.gzip_body is not None

    @property
    def in_memory(self) -> bool:
        return self.body is not None

    def matches_etag(self, tag: bytes) -> bool:
        """Weak comparison (RFC 9110 8.8.3.2) with either of this file's tags."""
        if tag.startswith(b"W/"):
            tag = tag[2:]
        return tag == self.etag or (self.gzip_etag is not None and tag == self.gzip_etag)


class OutputFiles:
    """The published output folder as seen by the web server."""

    def __init__(
        self,
        output_dir: str,
        *,
        max_cached_file: int = MAX_CACHED_FILE,
        cache_budget: int = CACHE_BUDGET,
    ) -> None:
        self._root = output_dir
        self._max_cached_file = max_cached_file
        self._budget = cache_budget
        self._cache: dict[str, StaticFile] = {}
        self._cached_bytes = 0
        # URL path -> cached file, for paths already checked by relative_path().
        self._by_url: dict[str, StaticFile] = {}
        # URL paths found current on disk during the running event-loop iteration.
        self._checked: set[str] = set()

    @property
    def root(self) -> str:
        return self._root

    def find(self, path: str, raw_path: bytes | None = None) -> StaticFile | Redirect | None:
        """What the (percent-decoded) URL `path` names; None when not found or refused."""
        item = self._by_url.get(path)
        if item is not None and (raw_path is None or b"%" not in raw_path):
            if path in self._checked:
                return item
            try:
                st = os.lstat(item.path)
            except (OSError, ValueError):
                st = None
            if (
                st is not None
                and st.st_mtime_ns == item.version[3]
                and st.st_ino == item.version[1]
                and st.st_size == item.version[2]
                and st.st_dev == item.version[0]
                and stat.S_ISREG(st.st_mode)
            ):
                self._mark_checked(path)
                return item
        found = self._find(path, raw_path)
        if isinstance(found, StaticFile) and self._cache.get(found.relative) is found:
            if len(self._by_url) >= _MAX_URLS:
                self._by_url.clear()
            self._by_url[path] = found
            self._mark_checked(path)
        return found

    def _mark_checked(self, path: str) -> None:
        """Remember that `path` was found current on disk during this event-loop iteration.

        The reset is queued behind the requests already read, so every request
        that uses the mark was read before the ``lstat`` behind it; requests
        read later run after the reset and check the disk again.
        """
        if not self._checked:
            try:
                asyncio.get_running_loop().call_soon(self._checked.clear)
            except RuntimeError:
                return  # not inside an event loop: check every time
        self._checked.add(path)

    def _find(self, path: str, raw_path: bytes | None) -> StaticFile | Redirect | None:
        relative = relative_path(path, raw_path)
        if relative is None:
            return None
        cached = self._cache.get(relative)
        if cached is not None:
            try:
                st = os.lstat(cached.path)
            except (OSError, ValueError):
                self._forget(relative)
                return None
            if stat.S_ISREG(st.st_mode) and version_of(st) == cached.version:
                return cached
        return self._load(relative)

    def is_current(self, item: StaticFile, st: os.stat_result) -> bool:
        """True when `st` (of an open file) is the version `item` describes."""
        return version_of(st) == item.version

    def _path(self, relative: str) -> str:
        return os.path.join(self._root, relative)

    def _forget(self, relative: str) -> None:
        old = self._cache.pop(relative, None)
        if old is not None:
            self._cached_bytes -= _weight(old)
            self._by_url.clear()
            self._checked.clear()

    def _load(self, relative: str) -> StaticFile | Redirect | None:
        self._forget(relative)
        real = resolve_inside(self._root, relative)
        if real is None:
            return None
        try:
            fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode):
                return self._folder(relative)
            if not stat.S_ISREG(st.st_mode):
                return None
            if st.st_size > self._max_cached_file:
                return _build(relative, self._path(relative), real, st, None, os.pread(fd, 1024, 0))
            body = _read_all(fd, st.st_size)
            if body is None or version_of(os.fstat(fd)) != version_of(st):
                return None  # changed while being read; the next request tries again
        finally:
            os.close(fd)
        item = _build(relative, self._path(relative), real, st, body, body)
        self._remember(item)
        return item

    def _folder(self, relative: str) -> Redirect | None:
        if relative == INDEX or relative.endswith("/" + INDEX):
            return None  # "/x/" asked for x/index.html, and that is a folder
        return Redirect(quote("/" + relative + "/").encode("ascii"))

    def _remember(self, item: StaticFile) -> None:
        weight = _weight(item)
        if weight > self._budget:
            return
        while self._cache and self._cached_bytes + weight > self._budget:
            oldest = next(iter(self._cache))
            self._forget(oldest)
        self._cache[item.relative] = item
        self._cached_bytes += weight


def _weight(item: StaticFile) -> int:
    return len(item.body or b"") + len(item.gzip_body or b"") + 512


def _read_all(fd: int, size: int) -> bytes | None:
    """Exactly `size` bytes from the start of `fd`, or None if the file is not that long."""
    chunks = []
    offset = 0
    while offset < size:
        chunk = os.pread(fd, size - offset, offset)
        if not chunk:
            return None
        chunks.append(chunk)
        offset += len(chunk)
    if os.pread(fd, 1, offset):
        return None
    return b"".join(chunks)


def _gzip(body: bytes, media_type: str) -> bytes | None:
    """The gzip form when the type is compressible and compression pays."""
    if len(body) < _GZIP_MIN or not is_compressible(media_type):
        return None
    packed = gzip.compress(body, compresslevel=6, mtime=0)
    return packed if len(packed) < len(body) else None


def _build(
    relative: str,
    path: str,
    real: str,
    st: os.stat_result,
    body: bytes | None,
    head: bytes,
) -> StaticFile:
    name = relative.rsplit("/", 1)[-1]
    media_type = content_type(name, head)
    gzip_body = _gzip(body, media_type) if body is not None else None
    if body is not None:
        tag = hashlib.blake2b(body, digest_size=12).hexdigest()
    else:
        tag = f"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}"
    etag = f'"{tag}"'.encode("ascii")
    gzip_etag = f'"{tag}-gz"'.encode("ascii") if gzip_body is not None else None
    mtime = int(st.st_mtime)
    last_modified = formatdate(mtime, usegmt=True).encode("ascii")
    styled = media_type in (ATOM, RSS) and _STYLESHEET in head[:_STYLESHEET_SNIFF]
    # A 304 repeats what caches need (RFC 9110 15.4.5): ETag, Cache-Control, Vary.
    cache = [(b"cache-control", _CACHE_CONTROL)]
    vary = [b"Accept-Encoding"] if gzip_body is not None else []
    if media_type in (ATOM, RSS):  # browsers get the feed's page (feed.html) or the XSL
        vary.append(b"Accept")
    if vary:
        cache.append((b"vary", b", ".join(vary)))
    common = [(b"last-modified", last_modified), *cache]
    kind = [(b"content-type", media_type.encode("ascii")), (b"x-content-type-options", b"nosniff"),
            *(STYLED_FEED_POLICY if styled else PAGE_POLICY)]
    headers = (*kind, (b"content-length", str(st.st_size).encode()), (b"etag", etag), *common)
    not_modified = ((b"etag", etag), *cache)
    gzip_headers = gzip_not_modified = None
    if gzip_body is not None and gzip_etag is not None:
        gzip_headers = (
            *kind,
            (b"content-encoding", b"gzip"),
            (b"content-length", str(len(gzip_body)).encode()),
            (b"etag", gzip_etag),
            *common,
        )
        gzip_not_modified = ((b"etag", gzip_etag), *cache)
    browser = browser_gzip = None
    if styled:
        browser = _relabel(headers, _BROWSER_TYPE)
        browser_gzip = _relabel(gzip_headers, _BROWSER_TYPE) if gzip_headers else None
    return StaticFile(
        relative=relative,
        path=path,
        real_path=real,
        version=version_of(st),
        content_type=media_type,
        etag=etag,
        gzip_etag=gzip_etag,
        last_modified=last_modified,
        mtime=mtime,
        size=st.st_size,
        body=body,
        gzip_body=gzip_body,
        headers=headers,
        gzip_headers=gzip_headers,
        not_modified_headers=not_modified,
        gzip_not_modified_headers=gzip_not_modified,
        browser_headers=browser,
        browser_gzip_headers=browser_gzip,
    )


def _relabel(headers: Headers, media_type: bytes) -> Headers:
    return tuple((name, media_type if name == b"content-type" else value)
                 for name, value in headers)
