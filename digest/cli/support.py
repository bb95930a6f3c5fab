"""Shared pieces of the command modules: the context, settings loading, the clock.

This and the ``cli*`` modules are the only ones that read the environment and
`.env`; everything below them receives a Settings value.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click
from dotenv import dotenv_values

from digest.errors import ConfigError
from digest.settings import Settings, load_settings
from digest.store.database import Store

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CONFIG = 2
EXIT_PROBLEMS = 3  # the run finished, but some articles were skipped


@dataclass
class Context:
    """What the top-level options decided; commands ask it for settings and the store."""

    env_file: Path | None
    debug: bool
    quiet: bool
    _settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = read_settings(self.env_file)
        return self._settings

    @contextmanager
    def store(self) -> Iterator[Store]:
        store = Store.open(self.settings.database_url, self.settings.base_dir)
        try:
            yield store
        finally:
            store.close()

    def echo(self, message: str) -> None:
        if not self.quiet:
            click.echo(message)


def read_settings(env_file: Path | None) -> Settings:
    """Environment over `.env` (from the working directory unless --env-file names one)."""
    values: dict[str, str] = {}
    path = env_file if env_file is not None else Path.cwd() / ".env"
    if env_file is not None and not env_file.is_file():
        raise ConfigError(f"--env-file {env_file}: no such file", "check the path")
    if path.is_file():
        try:
            loaded = dotenv_values(path)
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read ({exc})", "save it as UTF-8 text") from exc
        values.update({k: v for k, v in loaded.items() if v is not None})
    values.update(os.environ)
    return load_settings(values, Path.cwd())


def now() -> datetime:
    """The clock; commands pass it down so nothing deeper reads it."""
    return datetime.now(UTC)


pass_ctx = click.make_pass_decorator(Context)
