"""Find article files under ARTICLES_DIR: stat only, nothing is read.

Hidden files and folders (``.git``, ``.DS_Store``) and files of other types
are passed over. A symlink may point anywhere inside the articles folder; one
that leads outside it, or loops, is reported and skipped.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from digest.article import SourceFile
from digest.errors import ArticleError
from digest.reading import SUFFIXES


@dataclass(frozen=True)
class Scan:
    files: tuple[SourceFile, ...]  # in directory order: stable while nothing changes
    problems: tuple[ArticleError, ...]

    def sorted_files(self) -> list[SourceFile]:
        return sorted(self.files)  # by key: keys are unique


def scan(root: Path) -> Scan:
    """Every article file under root with its size and mtime, in directory order.

    Not sorted: the nothing-changed publish only compares this list with the
    previous one, and sorting 100,000 keys would cost a third of the stat calls.
    """
    if not root.is_dir():
        raise ArticleError(root, "the articles folder does not exist",
                           "create it, or point ARTICLES_DIR at your articles")
    real_root = os.path.realpath(root)
    files: list[SourceFile] = []
    problems: list[ArticleError] = []
    _walk(str(root), "", real_root, files, problems, set())
    return Scan(tuple(files), tuple(problems))


def _walk(folder: str, prefix: str, real_root: str, files: list[SourceFile],
          problems: list[ArticleError], seen_dirs: set[str]) -> None:
    # The hot loop of a nothing-changed publish: one stat per article file, nothing else.
    try:
        entries = list(os.scandir(folder))
    except OSError as exc:
        problems.append(ArticleError(prefix or ".", f"cannot list folder ({exc.strerror})",
                                     "check its permissions"))
        return
    append = files.append
    for entry in entries:
        name = entry.name
        if name[0] == ".":
            continue
        key = prefix + name
        try:
            if entry.is_symlink():
                _follow_link(entry, key, real_root, files, problems, seen_dirs)
            elif entry.is_dir(follow_symlinks=False):
                _descend(entry.path, key, real_root, files, problems, seen_dirs)
            elif name.lower().endswith(SUFFIXES):
                info = entry.stat(follow_symlinks=False)
                if stat.S_ISREG(info.st_mode):
                    append(SourceFile(key, entry.path, info.st_size, info.st_mtime_ns))
        except OSError as exc:
            problems.append(ArticleError(key, f"cannot read ({exc.strerror})",
                                         "check that the file exists and is readable"))


def _follow_link(entry: os.DirEntry[str], key: str, real_root: str, files: list[SourceFile],
                 problems: list[ArticleError], seen_dirs: set[str]) -> None:
    """A symlink is fine while it stays inside the articles folder."""
    target = os.path.realpath(entry.path)
    if os.path.commonpath([target, real_root]) != real_root:
        if _is_article_name(entry.name) or os.path.isdir(entry.path):
            problems.append(ArticleError(
                key, "is a symlink that leads outside the articles folder",
                "copy the file into the articles folder instead of linking it"))
        return
    info = os.stat(entry.path)
    if stat.S_ISDIR(info.st_mode):
        _descend(entry.path, key, real_root, files, problems, seen_dirs)
    elif stat.S_ISREG(info.st_mode) and _is_article_name(entry.name):
        files.append(SourceFile(key, entry.path, info.st_size, info.st_mtime_ns))


def _descend(path: str, key: str, real_root: str, files: list[SourceFile],
             problems: list[ArticleError], seen_dirs: set[str]) -> None:
    real = os.path.realpath(path)
    if real not in seen_dirs:  # a link loop would otherwise walk forever
        seen_dirs.add(real)
        _walk(path, key + "/", real_root, files, problems, seen_dirs)


def _is_article_name(name: str) -> bool:
    return name.lower().endswith(SUFFIXES)
