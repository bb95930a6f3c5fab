"""Signatures of listing pages and feeds: equal signatures mean byte-identical files.

A listing (an archive page, a tag's page and feeds) hashes what it shows, with
the fingerprint of everything but the articles (settings, templates). A
publish remembers every signature in the store; the next one keeps the files
of a listing whose signature did not change instead of rendering them again.
"""

from __future__ import annotations

import hashlib

from digest.model import Entry


class Signatures:
    def __init__(self, config: str, old: dict[str, str]) -> None:
        self._config = config
        self._old = old
        self.new: dict[str, str] = {}  # to remember for the next publish

    def same(self, path: str, entries: list[Entry], extra: str) -> bool:
        """Record the signature of the listing at path; whether the last publish had it too."""
        signature = signature_of(self._config, entries, extra)
        self.new[path] = signature
        return self._old.get(path) == signature


def signature_of(config: str, entries: list[Entry], extra: str) -> str:
    """What a listing shows, hashed."""
    digest = hashlib.blake2b(config.encode(), digest_size=16)
    digest.update(extra.encode("utf-8", "surrogatepass"))
    for e in entries:
        # Canonical text, not repr(): a date read back from the store has another tzinfo type.
        fields = (e.key, e.id, e.slug, e.url, e.title, e.published.isoformat(),
                  e.updated.isoformat(), e.author, "\x1f".join(e.tags), e.summary, e.image,
                  repr(e.enclosure))
        digest.update("\x1e".join(fields).encode("utf-8", "surrogatepass") + b"\x1d")
    return digest.hexdigest()
