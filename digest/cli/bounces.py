"""Commands: bounces import, bounces fetch."""

from __future__ import annotations

import mailbox
import sys
from collections.abc import Iterator
from pathlib import Path

import click

from digest.cli.support import Context, now, pass_ctx
from digest.errors import MailError
from digest.mail.bounces import ImportSummary, check_bounce_settings, import_messages
from digest.mail.imap import fetch_bounces

_RESULTS = ("bounced", "counted", "unsubscribed", "unrecognised", "unmatched", "unreadable")


@click.group()
def bounces() -> None:
    """Read returned messages (bounces, complaints) and update the subscribers."""


@bounces.command("import")
@click.argument("files", nargs=-1,
                type=click.Path(path_type=Path, dir_okay=False, exists=True, allow_dash=True))
@pass_ctx
def import_command(ctx: Context, files: tuple[Path, ...]) -> None:
    """Read returned messages from FILES (one message each, or an mbox) or standard input.

    RFC 3464 delivery status notifications: permanent failure -> bounced,
    temporary -> counted; RFC 5965 complaints -> unsubscribed; anything else is
    left alone and counted as unrecognised. Only messages carrying a valid
    bounce token (BOUNCE_ADDRESS) change a subscriber.
    """
    check_bounce_settings(ctx.settings)
    if (not files or Path("-") in files) and sys.stdin.isatty():
        raise click.UsageError("no message to read: give FILES, or pipe a message in "
                               "(digest bounces import < message.eml)")
    with ctx.store() as store:
        summary = import_messages(ctx.settings, store, _messages(files), now())
    _report(ctx, summary)


@bounces.command("fetch")
@pass_ctx
def fetch_command(ctx: Context) -> None:
    """Read the unseen messages of the IMAP mailbox BOUNCE_IMAP_URL, as `bounces import` does.

    Messages that changed a subscriber are deleted (or moved to the folder
    BOUNCE_IMAP_DONE names); the others are marked seen and left alone.
    """
    with ctx.store() as store:
        summary = fetch_bounces(ctx.settings, store, now())
    _report(ctx, summary)


def _report(ctx: Context, summary: ImportSummary) -> None:
    for outcome in summary.outcomes:
        if outcome.result not in ("unrecognised",):
            click.echo(f"{outcome.source}\t{outcome.result}\t{outcome.address or '-'}\t"
                       f"{outcome.detail}")
    counts = summary.counts()
    ctx.echo(", ".join(f"{counts[r]} {r}" for r in _RESULTS))


def _messages(files: tuple[Path, ...]) -> Iterator[tuple[str, bytes]]:
    if not files or files == (Path("-"),):
        yield "stdin", _strip_from_line(sys.stdin.buffer.read())
        return
    for path in files:
        if str(path) == "-":
            yield "stdin", _strip_from_line(sys.stdin.buffer.read())
            continue
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise MailError(f"{path}: cannot read ({exc.strerror or exc})",
                            "check the file name and its permissions") from exc
        if data.startswith(b"From "):
            box = mailbox.mbox(path, create=False)
            for number, key in enumerate(box.iterkeys(), start=1):
                yield f"{path}#{number}", box.get_bytes(key)
        else:
            yield str(path), data


def _strip_from_line(data: bytes) -> bytes:
    """A message piped by an MTA may start with an mbox 'From ' line: not a header."""
    if data.startswith(b"From "):
        return data.split(b"\n", 1)[1] if b"\n" in data else b""
    return data
