"""What a publish or a check reports, and the problems a publish remembers for the next."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from digest.errors import ArticleError

Progress = Callable[[str, int, int], None]  # (phase, done, total)


@dataclass(frozen=True)
class PublishReport:
    published: int  # articles in the output
    new: int
    updated: int
    removed: int
    drafts: int
    scheduled: int
    problems: tuple[ArticleError, ...]
    files_written: int
    files_kept: int
    bytes_written: int
    nothing_changed: bool  # the fast path: no file changed since the last publish
    output_dir: Path


@dataclass(frozen=True)
class CheckReport:
    articles: int
    published: int
    drafts: int
    scheduled: int
    problems: tuple[ArticleError, ...]


def dump_problems(problems: list[ArticleError]) -> str:
    return json.dumps([[p.path, p.reason, p.hint] for p in problems])


def load_problems(text: str | None) -> tuple[ArticleError, ...]:
    return tuple(ArticleError(path, reason, hint) for path, reason, hint in json.loads(text or "[]"))
