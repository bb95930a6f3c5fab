"""Files beside the articles (images, PDFs, audio, video): published at the path they have.

A file ``articles/posts/img/dark.png`` is published as ``articles/posts/img/dark.png``
in the output, beside the page of ``articles/posts/hello.md``
(``articles/posts/hello.html``), so a relative ``src="img/dark.png"`` in the
article works on its page as written. Feeds and the digest make it absolute.
When an explicit ``slug`` moves the page to another folder, the article's
relative links are rewritten to lead to the same files from there.

A published file is copied once: the next generations hard-link it while its
size and modification time stay the same (the copy keeps the source's mtime).

References are checked as each article is read: a relative ``src`` or ``href``
that leads to no publishable file is a warning naming the article and the path.
"""

from __future__ import annotations

import errno
import mimetypes
import os
import posixpath
import shutil
import stat
from dataclasses import replace
from pathlib import Path
from urllib.parse import unquote, urlsplit

from digest.errors import ArticleError, OutputError, shown_path
from digest.model import Article, SourceFile, article_path
from digest.publish.output import Generation
from digest.publish.reading import SUFFIXES, slug_problem
from digest.publish.sanitize import (
    absolute_value,
    clean_marked,
    clean_with_filter,
    fill_marked,
    has_link_attribute,
)

PREFIX = "articles/"  # where articles' pages and the files beside them live in the output
_PAGE_SUFFIXES = (".html", ".htm")
_TYPES = {  # a fixed table: the answer must not depend on the machine's /etc/mime.types
    ".mp3": "audio/mpeg", ".m4a": "audio/mp4", ".aac": "audio/aac", ".ogg": "audio/ogg",
    ".oga": "audio/ogg", ".opus": "audio/ogg", ".wav": "audio/wav", ".flac": "audio/flac",
    ".mp4": "video/mp4", ".m4v": "video/mp4", ".webm": "video/webm", ".mov": "video/quicktime",
    ".ogv": "video/ogg", ".pdf": "application/pdf", ".png": "image/png", ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg", ".gif": "image/gif", ".webp": "image/webp", ".svg": "image/svg+xml",
}


def output_path(key: str) -> str:
    """Where the file with this path under ARTICLES_DIR is published."""
    return PREFIX + key


def media_type(path: str) -> str:
    suffix = posixpath.splitext(path)[1].lower()
    return _TYPES.get(suffix) or mimetypes.types_map.get(suffix, "application/octet-stream")


def publish(gen: Generation, assets: tuple[SourceFile, ...]) -> list[ArticleError]:
    """Place every asset in the new generation: a hard link when unchanged, else one copy."""
    problems = []
    for asset in sorted(assets):
        path = output_path(asset.key)
        if os.path.lexists(f"{gen.path}/{path}"):
            problems.append(_clash(asset.key, path))
        elif not (_unchanged(gen.previous, path, asset) and gen.keep(path)):
            _copy(gen, path, asset)
    return problems


def clashes(assets: tuple[SourceFile, ...], pages: set[str]) -> list[ArticleError]:
    """What :func:`publish` refuses, known without writing: the files whose output path is
    one of these article pages (output paths) or a folder of one."""
    taken = set(pages)
    for page in pages:
        folder = posixpath.dirname(page)
        while folder not in ("", "articles") and folder not in taken:
            taken.add(folder)
            folder = posixpath.dirname(folder)
    return [_clash(asset.key, output_path(asset.key)) for asset in sorted(assets)
            if output_path(asset.key) in taken]


def _clash(key: str, path: str) -> ArticleError:
    return ArticleError(key, f"would be published at {path}, where an article's page is; "
                        "not published", "rename the file or the article")


def _unchanged(previous: Path | None, path: str, asset: SourceFile) -> bool:
    if previous is None:
        return False
    try:
        info = os.stat(f"{previous}/{path}")
    except OSError:
        return False
    return info.st_size == asset.size and info.st_mtime_ns == asset.mtime_ns


def _copy(gen: Generation, path: str, asset: SourceFile) -> None:
    target = f"{gen.path}/{path}"
    try:
        os.makedirs(posixpath.dirname(target), exist_ok=True)
        shutil.copyfile(asset.path, target)  # never a link: an edited source must not leak in
        os.utime(target, ns=(asset.mtime_ns, asset.mtime_ns))
    except OSError as exc:
        raise OutputError(f"cannot copy {shown_path(asset.key)} to {shown_path(path)} "
                          f"({exc.strerror})",
                          "check the file, free disk space and permissions of OUTPUT_DIR") from exc
    gen.count(True, asset.size)


def link_references(article: Article, articles_dir: Path, max_bytes: int) -> Article:
    """The article with its relative links checked (and moved with its page), its first
    image, and its enclosure (as read: a path relative to the article) as an output path."""
    return _link_references(article, articles_dir, max_bytes, None)[0]


def link_references_absolute(article: Article, articles_dir: Path, max_bytes: int,
                             page_url: str) -> tuple[Article, str | None]:
    """link_references, and the body it gives with links absolute for the page at page_url,
    ``absolutize(result.body_html, page_url)``, from the same sanitizer pass when that is
    sure to give the same; else None (absolutize it when needed)."""
    return _link_references(article, articles_dir, max_bytes, page_url)


def _link_references(article: Article, articles_dir: Path, max_bytes: int,
                     page_url: str | None) -> tuple[Article, str | None]:
    body = article.body_html
    if "src=" not in body and "href=" not in body and not article.enclosure:
        return article if not article.image else replace(article, image=""), None
    refs = _References(article, articles_dir, max_bytes)
    content = None
    if "src=" in body or "href=" in body:
        marked = None if page_url is None else clean_marked(body, refs.attribute)
        if marked is None:
            refs = _References(article, articles_dir, max_bytes)  # as if never marked
            body = clean_with_filter(body, refs.attribute)
        else:
            body, content = _fill(body, *marked, page_url or "")
    found = refs.enclosure(article.enclosure) if article.enclosure else None
    return replace(article, body_html=body, image=refs.image,
                   enclosure=output_path(found) if found else "",
                   references=tuple(sorted(refs.found)),
                   warnings=(*article.warnings, *refs.warnings)), content


def _fill(body: str, marked: str, values: list[tuple[str, str, str, str]],
          page_url: str) -> tuple[str, str | None]:
    """The body with the references' values, and (None when unsure) it with links absolute.

    The marked pass is the sanitizer's pass over the body with the values left out. If
    the values read give back the body, the body is a fixed point of the sanitizer, and
    so is the new body (only link values differ, and they decide no element's place):
    sanitizing it again with absolutize's filter changes just those values.
    """
    new_body = fill_marked(marked, [given for _, _, _, given in values])
    if fill_marked(marked, [read for _, _, read, _ in values]) != body:
        return new_body, None  # sanitizing it again may move elements: absolutize does it
    if not has_link_attribute(new_body):
        return new_body, new_body
    absolute = [absolute_value(page_url, tag, attribute, given)
                for tag, attribute, _, given in values]
    if None in absolute:
        return new_body, None  # a dropped attribute moves others: absolutize does it
    return new_body, fill_marked(marked, [value or "" for value in absolute])


class _References:
    def __init__(self, article: Article, articles_dir: Path, max_bytes: int) -> None:
        self.key_dir = posixpath.dirname(article.key)
        self.page_dir = posixpath.dirname(article_path(article.slug))
        self.moved = self.page_dir != posixpath.dirname(output_path(article.key))
        self.articles_dir = articles_dir
        self.max_bytes = max_bytes
        self.image = ""
        self.warnings: list[str] = []
        self.found: set[str] = set()  # paths under ARTICLES_DIR of the files named

    def attribute(self, tag: str, attribute: str, value: str) -> str | None:
        if attribute not in ("src", "href"):
            return value
        parts = urlsplit(value.strip())
        if parts.scheme or parts.netloc or parts.path.startswith("/") or not parts.path:
            if tag == "img" and not self.image and parts.scheme in ("http", "https"):
                self.image = value.strip()
            return value
        found = self.target(parts.path, f"<{tag} {attribute}>")
        if found is None:
            return value
        if tag == "img" and not self.image:
            self.image = output_path(found)
        if not self.moved:
            return value
        moved = posixpath.relpath(output_path(found), self.page_dir)
        return moved + (f"?{parts.query}" if parts.query else "") + \
            (f"#{parts.fragment}" if parts.fragment else "")

    def enclosure(self, reference: str) -> str | None:
        """The path under ARTICLES_DIR of the enclosure file, else None with a warning."""
        parts = urlsplit(reference.strip())
        if parts.scheme or parts.netloc:
            self.warnings.append(
                f"enclosure {reference!r} is a web address, not a file beside the article "
                "(its length and type are read from the file); it is left out of the feeds")
            return None
        return self.target(reference, "enclosure")

    def target(self, reference: str, what: str) -> str | None:
        """The path under ARTICLES_DIR of a published file the reference names, else None
        (with a warning when it names none). Links to other articles' files or pages, and
        to the site's own files above the articles, are not checked."""
        path = posixpath.normpath(posixpath.join(self.key_dir, unquote(reference)))
        if path.lower().endswith(SUFFIXES + _PAGE_SUFFIXES):
            return None
        if path == ".." or path.startswith("../"):
            return None  # above the articles: the site's own files (../feed.atom), not checked
        if slug_problem(path) is None \
                and _small_file(f"{self.articles_dir}/{path}", self.max_bytes) \
                and inside(self.articles_dir, path):
            self.found.add(path)
            return path
        self.warnings.append(f"{what} {reference!r} {self._why_not(path)}")
        return None

    def _why_not(self, path: str) -> str:
        """Why the file at `path` (under ARTICLES_DIR) is not published, for the warning:
        missing, or there and refused (the scan names the file with its own problem)."""
        file = f"{self.articles_dir}/{path}"
        try:
            info = os.stat(file)
        except (OSError, ValueError):
            return f"names a missing file ({path}); it is not published"
        if not stat.S_ISREG(info.st_mode):
            return f"names {path}, which is not a file; it is not published"
        problem = slug_problem(path)
        if problem is not None:
            return (f"names {path}, a file whose name {problem}; it is not published "
                    "(rename the file and the link)")
        if info.st_size > self.max_bytes:
            return (f"names {path}, a file of {info.st_size:,} bytes, over MAX_ASSET_BYTES "
                    f"({self.max_bytes:,}); it is not published")
        return (f"names {path}, which leads outside ARTICLES_DIR (a symbolic link); it is "
                "not published")


def _small_file(file: str, max_bytes: int) -> bool:
    """``Path(file).is_file() and Path(file).stat().st_size <= max_bytes``, in one stat."""
    try:
        info = os.stat(file)
    except ValueError:
        return False
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP):
            return False  # what Path.is_file ignores; other errors are raised, as there
        raise
    return stat.S_ISREG(info.st_mode) and info.st_size <= max_bytes


def inside(root: Path, path: str) -> bool:
    """Whether root/path (path normalized, relative, not above root) resolves to a file
    under root: at once when no part of path is a symbolic link (then it resolves to the
    resolved root and path), else by resolving both."""
    part = str(root)
    for segment in path.split("/"):
        part = f"{part}/{segment}"
        if os.path.islink(part):
            return _inside(root / path, root)
    return True


def _inside(file: Path, root: Path) -> bool:
    real_root = os.path.realpath(root)
    return os.path.commonpath([os.path.realpath(file), real_root]) == real_root

