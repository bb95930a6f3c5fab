"""The one error tree of digest.

Every failure a user can act on is a :class:`DigestError` with a message that
says what happened (naming the file, setting or address) and a hint that says
what to do. Third-party exceptions are wrapped once, where they enter our code,
with ``raise SomeError(...) from exc``.

    DigestError
    ├── ConfigError        a setting is missing or malformed
    │   └── CronError          DIGEST_SCHEDULE is not a crontab expression (digest.cron)
    ├── ArticleError       one article file cannot be read or is invalid
    ├── StoreError         the state store cannot be opened or migrated
    ├── OutputError        the output folder cannot be written
    ├── TemplateError      a Jinja2 template is missing or broken
    ├── MailError          composing or delivering the digest failed
    │   ├── SMTPConfigError    authentication / TLS / connection settings are wrong
    │   ├── SubscriberError    an address is invalid
    │   └── DeliveryError      the server did not take a message (digest.mail.smtp):
    │       ├── TemporaryFailure   4xx or network failure; tried again later
    │       ├── PermanentFailure   5xx for this recipient; not retried
    │       └── OutcomeUnknown     the reply to the end of data was lost
    ├── TokenError         an unsubscribe or confirm link is invalid (digest.mail.tokens)
    ├── ScheduleError      the scheduler cannot start
    ├── ServeError         the web server cannot start
    └── Stopped            a signal stopped the command before it finished

Paths go into messages through :func:`shown_path`, which escapes newlines and
other invisible characters in file names. Exit codes are named in
:mod:`digest.exit_codes`.
"""

from __future__ import annotations

import os
from pathlib import Path

from digest import exit_codes


class DigestError(Exception):
    """Base class: a message for the user plus an optional hint on what to do."""

    exit_code = exit_codes.FAILED

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class ConfigError(DigestError):
    """A setting is missing or has a value of the wrong form."""

    exit_code = exit_codes.USAGE


class ArticleError(DigestError):
    """One article file cannot be published; the others still are."""

    def __init__(self, path: Path | str, reason: str, hint: str | None = None) -> None:
        super().__init__(f"{shown_path(path)}: {reason}", hint)
        self.path = str(path)
        self.reason = reason


class StoreError(DigestError):
    """The state store cannot be reached, opened or migrated."""


class OutputError(DigestError):
    """The output folder cannot be written."""


class TemplateError(DigestError):
    """A template cannot be found or rendered."""


class MailError(DigestError):
    """Composing or delivering mail failed."""


class SMTPConfigError(MailError):
    """The SMTP settings are wrong: stop the whole run, retrying cannot help."""

    exit_code = exit_codes.USAGE


class SubscriberError(MailError):
    """A subscriber address or import file is invalid."""


class ScheduleError(DigestError):
    """The scheduler cannot start or run."""


class ServeError(DigestError):
    """The web server cannot start."""


class Stopped(DigestError):
    """A command was stopped by a signal before it finished (exit 128 + SIGTERM)."""

    exit_code = exit_codes.STOPPED


_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def shown_path(path: os.PathLike[str] | str) -> str:
    """A path as it may appear in a message: one line, every invisible character escaped.

    A newline, escape sequence or bidi mark in a file name would otherwise forge
    output lines or hide what the name is. Bytes that are not UTF-8 (kept by
    Python as lone surrogates) are shown as ``\\xNN`` (80 to ff), other characters
    from 80 on as ``\\uNNNN``; a backslash is doubled: the escaped form is unambiguous.
    """
    text = os.fspath(path)
    if text.isprintable() and "\\" not in text:
        return text  # the common case, fast
    out: list[str] = []
    for char in text:
        code = ord(char)
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif 0xDC80 <= code <= 0xDCFF:  # os.fsdecode's stand-in for an undecodable byte
            out.append(f"\\x{code - 0xDC00:02x}")
        elif not char.isprintable():  # controls, bidi marks, line ends, odd spaces, unassigned
            out.append(f"\\x{code:02x}" if code < 0x80 else
                       f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
        else:
            out.append(char)
    return "".join(out)


class InitError(DigestError):
    """`digest init` cannot make the new site: a file it would write exists, or cannot be written."""
