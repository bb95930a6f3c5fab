"""Sanitized article bodies kept between publishes, so a costly body is made once.

The feeds carry the full HTML of the newest articles, and an unchanged article
is not read again when publishing, so its body would have to be made anew
(read, rendered, sanitized) on every publish. This folder keeps those bodies by
the content hash of their file (and digest's version, whose sanitizer made
them, and the records' version, whose reader linked their files to the page):
``.<OUTPUT_DIR>.generations/bodies/``, beside the output generations and
never served. It is only a cache: a missing, unreadable or unwritable entry
just means the body is made again, and a publish keeps only the entries it used.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable
from pathlib import Path

from digest import __version__
from digest.publish.fingerprints import RECORDS
from digest.publish.output import generations_dir

FOLDER = "bodies"


class BodyCache:
    def __init__(self, output_dir: Path) -> None:
        self.folder = generations_dir(output_dir) / FOLDER
        self._used: set[str] = set()

    def body(self, content_hash: str, make: Callable[[], tuple[str, str] | None]) -> str | None:
        """The kept body for content_hash, else make() -> (content hash, body) or None.

        A made body is kept only when its content hash is the one asked for (the
        file may have changed since it was published).
        """
        name = self._name(content_hash)
        self._used.add(name)
        with contextlib.suppress(OSError, UnicodeDecodeError):
            return (self.folder / name).read_text(encoding="utf-8")
        made = make()
        if made is None:
            return None
        made_hash, html = made
        if made_hash == content_hash:
            self._put(name, html)
        return html

    def prune(self) -> None:
        """Forget every body this publish did not ask for."""
        with contextlib.suppress(OSError):
            for path in self.folder.iterdir():
                if path.name not in self._used:
                    with contextlib.suppress(OSError):
                        path.unlink()

    def _put(self, name: str, html: str) -> None:
        temporary = self.folder / f".{name}.{os.getpid()}.tmp"
        try:
            self.folder.mkdir(exist_ok=True)
            temporary.write_text(html, encoding="utf-8")
            os.replace(temporary, self.folder / name)
        except OSError:
            with contextlib.suppress(OSError):
                temporary.unlink()

    @staticmethod
    def _name(content_hash: str) -> str:
        key = f"{__version__}:{RECORDS}:{content_hash}".encode()
        return hashlib.blake2b(key, digest_size=16).hexdigest() + ".html"
