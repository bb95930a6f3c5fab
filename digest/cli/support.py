"""Shared pieces of the command modules: the context, settings loading, the clock,
the log options, and stopping on a signal.

This and the ``cli*`` modules are the only ones that read the environment and
`.env`; everything below them receives a Settings value. Nothing here imports
the store, the publisher, the mailer or the web server: `digest --help` loads
this module, and each command imports only what it uses.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TypeVar

import click

from digest.errors import ConfigError, OutputError, shown_path
from digest.logs import FORMATS, setup_logging

if TYPE_CHECKING:
    from digest.settings import Settings
    from digest.store.database import Store

F = TypeVar("F", bound=Callable[..., Any])


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
        # Imported on use: SQLAlchemy is most of digest's start-up time, and
        # `digest --version`, `--help` and `check` never open the store.
        from digest.store.database import Store

        store = Store.open(self.settings.database_url, self.settings.base_dir)
        try:
            yield store
        finally:
            store.close()

    def echo(self, message: str) -> None:
        if not self.quiet:
            click.echo(message)

    def note(self, message: str) -> None:
        """A remark on stderr beside a command's data on stdout (a count); none with -q."""
        if not self.quiet:
            click.echo(message, err=True)

    @property
    def log_level(self) -> int:
        """The level of the long-running commands' logs: --debug, --quiet, else INFO."""
        return logging.DEBUG if self.debug else logging.WARNING if self.quiet else logging.INFO

    def setup_logging(self, log_format: str) -> int:
        """Log to stderr in `log_format` at :attr:`log_level`; returns that level."""
        level = self.log_level
        setup_logging(log_format, level)
        return level


def read_settings(env_file: Path | None) -> Settings:
    """Environment over `.env` (from the working directory unless --env-file names one)."""
    # Imported on use, like the store: `digest --help` reads no settings.
    from dotenv import dotenv_values

    from digest.settings import load_settings

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
        _warn_misspelt(env_file or Path(".env"), loaded)
    values.update(os.environ)
    return load_settings(values, Path.cwd())


def _warn_misspelt(path: Path, names: Iterable[str]) -> None:
    """A line of `.env` whose name is close to a setting's but none (SMTP_PASWORD, smtp_host)
    would be silently ignored: say so on stderr, naming the line's name, never its value.
    Names far from every setting (another program's, in a shared file) pass in silence."""
    from difflib import get_close_matches

    from digest.settings import ENV_NAMES

    for name in names:
        if name in ENV_NAMES:
            continue
        close = get_close_matches(name.upper(), sorted(ENV_NAMES), n=1, cutoff=0.8)
        if close:
            click.echo(f"warning: {shown_path(path)}: {shown_path(name)} is not a setting and "
                       f"is ignored; did you mean {close[0]}?", err=True)


@contextmanager
def writing(option: str, path: Path) -> Iterator[None]:
    """Writing the file or folder an option names: an OSError becomes an OutputError naming
    the option and the path (no traceback for a missing or read-only folder)."""
    try:
        yield
    except OSError as exc:
        raise OutputError(f"{option} {shown_path(path)}: cannot write ({exc.strerror or exc})",
                          "check that its folder exists and that you may write there") from exc


def now() -> datetime:
    """The clock; commands pass it down so nothing deeper reads it."""
    return datetime.now(UTC)


pass_ctx = click.make_pass_decorator(Context)


def log_format_option(function: F) -> F:
    """``--log-format text|json``, the same for every long-running command."""
    return click.option(
        "--log-format", type=click.Choice(FORMATS), default="text", show_default=True,
        help="Log lines on stderr: text, or one JSON object per line for log collectors.",
    )(function)


Handler = Callable[[int, FrameType | None], None]


@contextmanager
def handling_signals(signals: tuple[signal.Signals, ...], handler: Handler) -> Iterator[None]:
    """Run `handler` on `signals` for the duration; the previous handlers come back afterwards.

    Outside the main thread (where Python cannot set handlers) it does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextmanager
def stop_on_signals(stop: threading.Event,
                    notice: Callable[[int, bool], None] | None = None) -> Iterator[None]:
    """SIGTERM and SIGINT set `stop`, which the work checks between steps.

    `notice(signum, again)` runs first (`again`: `stop` was already set); it may
    say what happens next, or raise KeyboardInterrupt to abort at once.
    """

    def handler(signum: int, frame: FrameType | None) -> None:
        if notice is not None:
            notice(signum, stop.is_set())
        stop.set()

    with handling_signals((signal.SIGTERM, signal.SIGINT), handler):
        yield


class Reload:
    """SIGHUP for a long-running command: check `.env` anew, then stop and restart in place.

    The handler reads the settings as a new start would; if they are wrong it
    logs why and the process keeps running with the settings it has. Otherwise
    it sets `stop` (the work ends as on SIGTERM) and :meth:`restart_if_asked`,
    called once everything is closed (locks, store, port), replaces the process
    with a new start of the same command line: same pid, new settings.
    """

    def __init__(self, ctx: Context, stop: threading.Event, logger: logging.Logger,
                 stopping: str) -> None:
        self._ctx = ctx
        self._stopping = stopping
        self._stop = stop
        self._log = logger
        self.asked = False
        # A terminal that hangs up also sends SIGHUP: then stop, never restart detached.
        self._terminals = tuple(fd for fd in (0, 1, 2) if os.isatty(fd))

    @contextmanager
    def on_hangup(self) -> Iterator[None]:
        with handling_signals((signal.SIGHUP,), self._handler):
            yield

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        if self._stop.is_set():
            self._log.warning("SIGHUP: already stopping; not reloading")
            return
        if self._terminals and not any(os.isatty(fd) for fd in self._terminals):
            self._log.info("SIGHUP: the terminal hung up; stopping as for SIGTERM (%s)",
                           self._stopping)
            self._stop.set()
            return
        try:
            read_settings(self._ctx.env_file)
        except ConfigError as exc:
            hint = f" (hint: {exc.hint})" if exc.hint else ""
            self._log.error("SIGHUP: not reloading, the settings have an error: %s%s; still "
                            "running with the settings it started with", exc.message, hint)
            return
        self.asked = True
        self._log.info("SIGHUP: reloading: stopping as for SIGTERM (%s), then starting again "
                       "with the settings of .env", self._stopping)
        self._stop.set()

    def restart_if_asked(self) -> None:
        """Replace this process with a new start of its command (only after SIGHUP)."""
        if not self.asked:
            return
        self._log.info("SIGHUP: restarting (pid %d)", os.getpid())
        for handler in logging.getLogger().handlers:
            handler.flush()
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(sys.executable, sys.orig_argv)  # noqa: S606 (this very command line again)
