"""Find article files under ARTICLES_DIR: stat only, nothing is read.

Hidden files and folders (any name starting with a dot: ``.git``, ``.DS_Store``,
an editor's ``.draft.md.swp``) are passed over, and so are files whose names do
not end in an article suffix. What is named like an article but cannot be one
is reported and skipped: a FIFO, socket or device (``x.md``), a file or folder
name that is not valid UTF-8, a symlink that leads outside the articles folder
or back to a folder already read (a loop such as ``ln -s . self``).

Every other regular file is an asset (:attr:`Scan.assets`), published as it is
(:mod:`digest.publish.assets`) when its path passes the slug rules and it is no
larger than MAX_ASSET_BYTES; otherwise it is reported and skipped.

Real folders are walked first and symlinked folders after them, so which path
names an article never depends on the order the file system lists entries in.
A folder that cannot be listed is reported and remembered in
:attr:`Scan.unlisted`: publish keeps the last good versions of the articles it
held, as it does for a file that cannot be read.
"""

from __future__ import annotations

import functools
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from digest.errors import ArticleError, shown_path
from digest.model import SourceFile
from digest.publish.reading import SUFFIXES, not_a_regular_file, slug_problem

DEFAULT_MAX_ASSET_BYTES = 50 * 1024 * 1024


@dataclass(frozen=True)
class Scan:
    files: tuple[SourceFile, ...]  # in directory order: stable while nothing changes
    problems: tuple[ArticleError, ...]
    unlisted: tuple[str, ...] = ()  # key prefixes ("sub/") of folders that could not be listed
    assets: tuple[SourceFile, ...] = ()  # the other files (images, PDFs, ...): published as-is

    def sorted_files(self) -> list[SourceFile]:
        return sorted(self.files)  # by key: keys are unique

    @functools.cached_property
    def asset_keys(self) -> frozenset[str]:
        """The keys of the assets, made on first use (only an article with links asks)."""
        return frozenset(asset.key for asset in self.assets)

    def hides(self, key: str) -> bool:
        """Whether the article with this key may exist in a folder that could not be listed."""
        return any(key.startswith(prefix) for prefix in self.unlisted)


def scan(root: Path, max_asset_bytes: int = DEFAULT_MAX_ASSET_BYTES) -> Scan:
    """Every article file under root with its size and mtime, in directory order.

    Not sorted: the nothing-changed publish only compares this list with the
    previous one, and sorting 100,000 keys would cost a third of the stat calls.
    """
    if not root.is_dir():
        raise ArticleError(root, "the articles folder does not exist",
                           "create it, or point ARTICLES_DIR at your articles")
    walk = _Walk(os.path.realpath(root), max_asset_bytes)
    info = os.stat(root)
    walk.visited.add((info.st_dev, info.st_ino))
    walk.folder(str(root), "")
    while walk.links:  # symlinked folders, after every real one
        pending, walk.links = sorted(walk.links), []
        for key, path in pending:
            walk.linked_folder(key, path)
    return Scan(tuple(walk.files), tuple(walk.problems), tuple(walk.unlisted),
                tuple(walk.assets))


class _Walk:
    def __init__(self, real_root: str, max_asset_bytes: int) -> None:
        self.real_root = real_root
        self.max_asset_bytes = max_asset_bytes
        self.assets: list[SourceFile] = []
        self.files: list[SourceFile] = []
        self.problems: list[ArticleError] = []
        self.unlisted: list[str] = []
        self.visited: set[tuple[int, int]] = set()  # (st_dev, st_ino) of folders walked
        self.links: list[tuple[str, str]] = []  # (key, path) of symlinked folders to walk

    def folder(self, folder: str, prefix: str) -> None:
        # The hot loop of a nothing-changed publish: one stat per article file, nothing else.
        try:
            entries = list(os.scandir(folder))
        except OSError as exc:
            self.unlisted.append(prefix)
            self.problems.append(ArticleError(
                prefix or ".", f"cannot list folder ({exc.strerror}); "
                "the articles in it keep their last published versions",
                "check its permissions"))
            return
        append = self.files.append
        for entry in entries:
            name = entry.name
            if name[0] == ".":
                continue
            key = prefix + name
            try:
                if not name.isascii() and not _is_utf8(name):
                    self._bad_name(entry, key)
                elif entry.is_symlink():
                    self._link(entry, key)
                elif entry.is_dir(follow_symlinks=False):
                    info = entry.stat(follow_symlinks=False)
                    self._descend(entry.path, key, (info.st_dev, info.st_ino))
                elif name.lower().endswith(SUFFIXES):
                    info = entry.stat(follow_symlinks=False)
                    if stat.S_ISREG(info.st_mode):
                        append(SourceFile(key, entry.path, info.st_size, info.st_mtime_ns))
                    else:
                        self.problems.append(not_a_regular_file(key, info.st_mode))
                else:
                    self._asset(key, entry.path, entry.stat(follow_symlinks=False))
            except OSError as exc:
                self.problems.append(ArticleError(key, f"cannot read ({exc.strerror})",
                                                  "check that the file exists and is readable"))

    def _descend(self, path: str, key: str, identity: tuple[int, int]) -> bool:
        if identity in self.visited:
            return False
        self.visited.add(identity)
        self.folder(path, key + "/")
        return True

    def _bad_name(self, entry: os.DirEntry[str], key: str) -> None:
        kind = "folder" if entry.is_dir() else "file"
        if kind == "folder" or _is_article_name(entry.name):
            self.problems.append(ArticleError(
                key, f"{kind} name is not valid UTF-8",
                f"rename the {kind} (digest uses the path in URLs and in its state store)"))

    def _link(self, entry: os.DirEntry[str], key: str) -> None:
        """A symlink is fine while it stays inside the articles folder."""
        target = os.path.realpath(entry.path)
        if os.path.commonpath([target, self.real_root]) != self.real_root:
            if _is_article_name(entry.name) or os.path.exists(entry.path):
                self.problems.append(ArticleError(
                    key, "is a symlink that leads outside the articles folder",
                    "copy the file into the articles folder instead of linking it"))
            return
        info = os.stat(entry.path)
        if stat.S_ISDIR(info.st_mode):
            self.links.append((key, entry.path))
        elif _is_article_name(entry.name):
            if stat.S_ISREG(info.st_mode):
                self.files.append(SourceFile(key, entry.path, info.st_size, info.st_mtime_ns))
            else:
                self.problems.append(not_a_regular_file(key, info.st_mode))
        else:
            self._asset(key, entry.path, info)

    def _asset(self, key: str, path: str, info: os.stat_result) -> None:
        """A file beside the articles: published at the same path when its name fits a URL."""
        if not stat.S_ISREG(info.st_mode):
            return  # a FIFO or device that is not named like an article: passed over
        problem = slug_problem(key)
        if problem is not None:
            self.problems.append(ArticleError(
                key, f"the file's path {problem}; not published",
                "rename it: only ASCII letters, digits, '-', '_', '~' and '.' between "
                "single '/'; no part may start with '.'"))
        elif info.st_size > self.max_asset_bytes:
            self.problems.append(ArticleError(
                key, f"is {info.st_size:,} bytes, over MAX_ASSET_BYTES ({self.max_asset_bytes:,}); "
                "not published", "make the file smaller or raise MAX_ASSET_BYTES"))
        else:
            self.assets.append(SourceFile(key, path, info.st_size, info.st_mtime_ns))

    def linked_folder(self, key: str, path: str) -> None:
        try:
            info = os.stat(path)
        except OSError as exc:
            self.problems.append(ArticleError(key, f"cannot read ({exc.strerror})",
                                              "check that the link's target exists"))
            return
        if not self._descend(path, key, (info.st_dev, info.st_ino)):
            target = os.path.relpath(os.path.realpath(path), self.real_root)
            where = "the articles folder itself" if target == "." else f"{shown_path(target)}/"
            self.problems.append(ArticleError(
                key, f"is a symlink to {where}, which is already read "
                "(a loop or a second path to the same articles); skipped",
                "remove the link: every article is published once, under its real path"))


def _is_article_name(name: str) -> bool:
    return name.lower().endswith(SUFFIXES)


def _is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # os.scandir turned undecodable bytes into lone surrogates
        return False
    return True
