"""The feeds' article contents (sanitized HTML, links made absolute), each made once.

The feeds carry the full HTML of the newest articles of the site and of every
tag. An article read in this publish brings its content along (reader
processes make it beside the page, and :class:`Newest` keeps only those that
may be in a feed); the content of an article not read again comes from the
pack kept by the last publish, or else from reading its file again.

The pack, ``.<OUTPUT_DIR>.generations/contents.pack`` (beside the output
generations, never served), is one file: a magic line, the contents, a JSON
index of ``name -> [offset, length, checksum]`` and the index's offset. A name is made from
the article file's content hash, the entry's URL, digest's version (whose
sanitizer made it) and the records' version. It is only a cache: it is written
to a temporary file and renamed, and an entry that is missing, unreadable or
fails its checksum is made again. Each publish keeps the entries it asked for.
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import json
import mmap
import os
import shutil
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from digest import __version__
from digest.model import Entry, StoredArticle, tag_slug
from digest.publish.fingerprints import RECORDS
from digest.publish.output import generations_dir

PACK = "contents.pack"
_MAGIC = b"digest-contents 2\n"
_OLD_FOLDER = "bodies"  # digest 0.x kept one file per body there


def content_name(content_hash: str, url: str) -> str:
    key = f"{__version__}:{RECORDS}:{content_hash}:{url}".encode("utf-8", "surrogatepass")
    return hashlib.blake2b(key, digest_size=16).hexdigest()


def _checksum(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=8).hexdigest()


class Newest:
    """Contents of the articles read so far that may be among the newest `size` of the
    site's feed or of one of their tags' feeds; the others are let go at once, so memory
    stays bounded by the feeds, not by the number of articles."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._heaps: dict[str, list[tuple[datetime, str]]] = {}  # "" is the site's feed
        self._refs: Counter[str] = Counter()
        self.contents: dict[str, str] = {}  # key -> content

    def offer(self, record: StoredArticle, content: str) -> None:
        order = (record.published, record.key)
        for group in ("", *{tag_slug(tag) for tag in record.tags}):
            heap = self._heaps.setdefault(group, [])
            if len(heap) < self._size:
                heapq.heappush(heap, order)
            elif order > heap[0]:
                self._release(heapq.heapreplace(heap, order)[1])
            else:
                continue
            self._refs[record.key] += 1
            self.contents[record.key] = content

    def _release(self, key: str) -> None:
        self._refs[key] -= 1
        if self._refs[key] <= 0:
            del self._refs[key]
            self.contents.pop(key, None)


class Contents:
    """Feed content of an entry: kept from reading it now, from the pack, or read again."""

    def __init__(self, output_dir: Path, current: dict[str, StoredArticle], read_now: dict[str, str],
                 read_again: Callable[[str], str | None]) -> None:
        self._pack = _Pack(generations_dir(output_dir) / PACK)
        self._current = current
        self._read_now = read_now
        self._read_again = read_again  # key -> the page body (relative links), or None
        self._made: dict[str, tuple[str, str | None]] = {}  # key -> (pack name, content)

    def __call__(self, entry: Entry, absolutize: Callable[[str, str], str]) -> str | None:
        """The entry's content; None when its file is broken now (its last good record stays)."""
        made = self._made.get(entry.key)
        if made is None:
            name = self.version(entry)
            content = self._read_now.get(entry.key)
            if content is None:
                content = self._pack.get(name)
            if content is None:
                body = self._read_again(entry.key)
                content = None if body is None else absolutize(body, entry.url)
            made = self._made[entry.key] = (name, content)
        return made[1]

    def version(self, entry: Entry) -> str:
        """What the entry's content is made from (its pack name), without making it."""
        return content_name(self._current[entry.key].content_hash, entry.url)

    def save(self) -> None:
        """Keep the contents this publish asked for (unless the pack holds exactly those)."""
        wanted = {name: content for name, content in self._made.values() if content is not None}
        self._pack.write(wanted)
        shutil.rmtree(self._pack.path.with_name(_OLD_FOLDER), ignore_errors=True)


class _Pack:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._index: dict[str, tuple[int, int, str]] | None = None
        self._data: mmap.mmap | bytes = b""
        self._start = 0

    def get(self, name: str) -> str | None:
        found = self._load().get(name)
        if found is None:
            return None
        offset, length, checksum = found
        data = self._data[self._start + offset:self._start + offset + length]
        if len(data) != length or _checksum(data) != checksum:
            return None
        with contextlib.suppress(UnicodeDecodeError):
            return data.decode("utf-8", "surrogatepass")
        return None

    def write(self, contents: dict[str, str]) -> None:
        """The contents after the magic line, then their JSON index, then the index's offset
        (8 bytes): written as they are encoded, so a large pack is never held twice."""
        if set(self._load()) == contents.keys() and self.path.exists():
            return
        index: dict[str, tuple[int, int, str]] = {}
        offset = 0
        temporary = self.path.with_name(f".{PACK}.{os.getpid()}.tmp")
        try:
            with open(temporary, "wb") as handle:
                handle.write(_MAGIC)
                for name in sorted(contents):
                    blob = contents[name].encode("utf-8", "surrogatepass")
                    index[name] = (offset, len(blob), _checksum(blob))
                    handle.write(blob)
                    offset += len(blob)
                handle.write(json.dumps(index, separators=(",", ":")).encode())
                handle.write((len(_MAGIC) + offset).to_bytes(8, "big"))
            os.replace(temporary, self.path)
        except OSError:
            with contextlib.suppress(OSError):
                temporary.unlink()

    def _load(self) -> dict[str, tuple[int, int, str]]:
        if self._index is None:
            self._index = {}
            with contextlib.suppress(OSError, ValueError, TypeError), open(self.path, "rb") as handle:
                data = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)  # pages read on demand
                if data[:len(_MAGIC)] == _MAGIC and len(data) >= len(_MAGIC) + 8:
                    at = int.from_bytes(data[-8:], "big")
                    index = json.loads(data[at:len(data) - 8]) if at >= len(_MAGIC) else {}
                    self._start = len(_MAGIC)
                    self._data = data
                    self._index = {str(k): (int(o), int(n), str(c)) for k, (o, n, c) in index.items()}
        return self._index
