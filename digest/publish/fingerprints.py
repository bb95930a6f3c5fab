"""Fingerprints that let a publish skip work: of the configuration, and of the articles folder."""

from __future__ import annotations

import hashlib
import operator

import jinja2

from digest import __version__, templates
from digest.model import SourceFile
from digest.settings import Settings

# Changes when what a record keeps of an article changes: every article is read again once.
RECORDS = "records-3 (image, enclosure; figures)"


def config_fingerprint(settings: Settings, env: jinja2.Environment, fid: str) -> str:
    parts = [
        __version__, settings.site_url, settings.site_title, settings.site_subtitle,
        settings.site_author, settings.site_language, str(settings.site_timezone),
        fid, str(settings.feed_max_items), str(settings.max_article_bytes),
        str(settings.articles_dir), templates.fingerprint(env), str(settings.subscribe_form),
        str(settings.max_asset_bytes), RECORDS,
        str(settings.digest_from is not None),  # the footer links the past digests
    ]
    return hashlib.blake2b("\0".join(parts).encode(), digest_size=16).hexdigest()


def scan_fingerprint(config: str, files: tuple[SourceFile, ...]) -> str:
    """Changes when any file is added, removed, resized or touched (and with the config).

    Taken over the files in directory order: an unchanged folder lists in the
    same order, and a different order only costs a full check, never a missed
    change. Built from C-level sums and one join rather than a line per file:
    this is most of the work of a publish in which nothing changed. The
    position weights make two files' opposite changes count, not cancel out.
    """
    sizes = [f.size for f in files]
    mtimes = [f.mtime_ns for f in files]
    weights = range(1, len(files) + 1)
    digest = hashlib.blake2b(digest_size=16)
    digest.update("\0".join([f.key for f in files]).encode("utf-8", "surrogateescape"))
    digest.update(repr((sum(sizes), sum(mtimes), sum(map(operator.mul, weights, sizes)),
                        sum(map(operator.mul, weights, mtimes)))).encode())
    return f"{config}:{digest.hexdigest()}"


def config_of(scan_fingerprint: str | None) -> str | None:
    """The configuration fingerprint a scan fingerprint was taken with (None: never published)."""
    return None if scan_fingerprint is None else scan_fingerprint.split(":", 1)[0]
