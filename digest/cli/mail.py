"""Commands: send (the digest, or a test of it) and history (past editions)."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Any

import click

from digest import exit_codes
from digest.addresses import file_name_part, normalize_address
from digest.cli.support import Context, now, pass_ctx, stop_on_signals, writing
from digest.mail.for_subscriber import (
    NOTHING_NEW,
    describe,
    is_subscribed,
    subscriber_view,
    view_message,
)
from digest.mail.message import OutgoingMessage
from digest.mail.previews import dry_run as build_dry_run
from digest.mail.previews import test_message
from digest.mail.reach import base_url_warnings
from digest.mail.send import SendReport, check_send_settings, send_digest
from digest.mail.smtp import SMTPMailer
from digest.service.reports import delivery_counts
from digest.store.edition_reports import edition_exists, problems
from digest.store.edition_reports import history as edition_history
from digest.words import plural

NOTHING_TO_SEND = f"{NOTHING_NEW}: nothing to send (--force sends anyway)"


@click.command()
@click.option("--force", is_flag=True,
              help="Send an edition even when no article is new (with --to: a test of it).")
@click.option("--dry-run", is_flag=True,
              help="Build the messages and show them; send nothing, record nothing.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False),
              help="With --dry-run: write one .eml file per recipient into this folder.")
@click.option("--to", "test_address", metavar="ADDRESS",
              help="Send a test of the next edition to this address only; record nothing. "
                   "A subscriber gets what their own message will carry (their topics and "
                   "cadence); any other address gets the whole edition.")
@click.option("--as", "as_subscriber", metavar="SUBSCRIBER",
              help="With --to: the test carries what SUBSCRIBER's message will carry (to "
                   "check what a reader gets, in your own mailbox); its unsubscribe and "
                   "manage links are ADDRESS's.")
@pass_ctx
def send(ctx: Context, force: bool, dry_run: bool, out_dir: Path | None,
         test_address: str | None, as_subscriber: str | None) -> None:
    """Build (or resume) the digest edition and mail it to every subscriber.

    Each article goes out in exactly one edition, and reaches each subscriber
    at most once (their topics and cadence decide which edition's message
    carries it, if any). An interrupted run is resumed by the next one: nobody
    already served gets the edition twice.
    Before the first message goes out, the edition's web copy (digests/N.html,
    which each mail links to) is put into OUTPUT_DIR.
    Exits with 3 when some deliveries failed or were deferred, and with 4
    when the server's reply to some messages was lost after their data (the
    outcome is unknown: each is sent once more by a run 30 minutes later or
    more, with the same Message-ID; `digest history` counts them).

    With --to, one test message and nothing recorded: when the address is a
    subscriber (or with --as SUBSCRIBER), the message carries exactly what
    theirs will; when their topics or cadence leave them nothing, nothing is
    sent and the command says why.
    """
    settings = ctx.settings
    if out_dir is not None and not dry_run:
        raise click.UsageError("--out needs --dry-run")
    for warning in base_url_warnings(settings.base_url):
        ctx.note(f"warning: {warning}")
    if dry_run and test_address:
        raise click.UsageError("use either --dry-run or --to")
    if as_subscriber is not None and not test_address:
        raise click.UsageError("--as needs --to ADDRESS (where the test goes)")
    if dry_run:
        with ctx.store() as store:
            messages = build_dry_run(settings, store, now(), force=force)
        if messages is None:  # what `digest send` would say and do: nothing, exit 0
            ctx.echo(NOTHING_TO_SEND)
            return
        _show_dry_run(ctx, messages, out_dir)
        return
    if test_address:
        _send_test(ctx, test_address, as_subscriber, force)
        return
    # Imported here: the other mail commands (subscribers ...) never load the publisher.
    from digest.publish.web_copy import publish_digest_pages

    stop = threading.Event()
    with ctx.store() as store, stop_on_signals(stop, _stopping), _ProgressBar(ctx) as bar:
        # The edition's web copy (the mail's "view in browser") is online before it goes out.
        report = send_digest(settings, store, lambda: SMTPMailer(settings), now(),
                             force=force, should_stop=stop.is_set, progress=bar.update,
                             before_delivery=lambda _: publish_digest_pages(settings, store))
    _summarise(ctx, report)
    if report.stopped:
        click.echo("stopped; run `digest send` again to deliver the rest", err=True)
        sys.exit(exit_codes.FAILED)  # not STOPPED: the run ended cleanly, between messages
    if report.unknown:
        sys.exit(exit_codes.UNKNOWN_OUTCOME)
    if not report.ok:
        sys.exit(exit_codes.PROBLEMS)


def _send_test(ctx: Context, to: str, as_subscriber: str | None, force: bool) -> None:
    """One test message to `to`: a subscriber's own (theirs, or `as_subscriber`'s), else the
    whole edition; what `digest send` (with --force when `force`) would send. Nothing
    recorded."""
    settings = ctx.settings
    address = normalize_address(to, "--to")
    reader = normalize_address(as_subscriber, "--as") if as_subscriber is not None else None
    check_send_settings(settings)
    at = now()
    with ctx.store() as store:
        if reader is None and is_subscribed(store, address):
            reader = address
        if reader is None:
            found = test_message(settings, store, address, at, force)
            if found is None:
                ctx.echo(f"nothing sent: {NOTHING_NEW} (--force sends a test anyway)")
                return
            message = found
            sent = "the next digest (the whole edition: not a subscriber)"
        else:
            view = subscriber_view(settings, store, reader, at, force)
            if view.message is None:
                hint = " (--force sends a test anyway)" if view.nothing_new else ""
                ctx.echo(f"nothing sent: {view.why_not}{hint}")
                return
            message = view_message(settings, view, address, at)
            sent = f"the next digest as {reader} gets it ({describe(view)})"
    mailer = SMTPMailer(settings)
    try:
        mailer.send(message)
    finally:
        mailer.close()
    ctx.echo(f"sent a test of {sent} to {address} (nothing recorded)")


def _stopping(signum: int, again: bool) -> None:
    """The first SIGTERM or SIGINT stops the send between messages; a second SIGINT aborts."""
    if again and signum == signal.SIGINT:
        raise KeyboardInterrupt
    click.echo("\nstopping after the current message...", err=True)


def _show_dry_run(ctx: Context, messages: list[OutgoingMessage], out_dir: Path | None) -> None:
    if not messages:
        ctx.echo("no recipients: nothing would be sent")
        return
    if out_dir is not None:
        with writing("--out", out_dir):
            out_dir.mkdir(parents=True, exist_ok=True)
            for number, message in enumerate(messages, start=1):
                name = f"{number:05d}-{file_name_part(message.recipient)}.eml"
                (out_dir / name).write_bytes(message.data)
        ctx.echo(f"wrote {plural(len(messages), 'message')} to {out_dir}")
        return
    click.echo(messages[0].data.decode("ascii").replace("\r\n", "\n"))
    recipients = ", ".join(m.recipient for m in messages)
    ctx.note(f"would send {plural(len(messages), 'message')}, to: {recipients}")
    if len(messages) > 1:
        ctx.note("(only the first is shown; use --out DIR to write them all)")


def _summarise(ctx: Context, report: SendReport) -> None:
    if report.edition is None:
        ctx.echo(NOTHING_TO_SEND)
        return
    verb = "created" if report.created else "resumed"
    ctx.echo(f"edition {report.edition} ({verb}, {plural(report.articles, 'article')}, "
             f"{plural(report.recipients, 'recipient')}): {delivery_counts(report)}"
             + (f", {report.unknown} unknown" if report.unknown else ""))
    for failure in report.failures:
        click.echo(f"  failed: {failure.recipient}: {failure.reply}", err=True)
    if report.bounced:
        click.echo(f"  {plural(report.bounced, 'address', 'addresses')} bounced: skipped from "
                   "now on (`digest subscribers list --status bounced`; `digest subscribers "
                   "reactivate ADDRESS` takes one back)", err=True)
    if report.unknown:
        click.echo(f"  {plural(report.unknown, 'message')} got no reply after their data: the "
                   "server may have them; each is sent once more (same Message-ID) by a "
                   "`digest send` 30 minutes later or more", err=True)
    if report.remaining:
        click.echo(f"  {plural(report.remaining, 'delivery', 'deliveries')} still to do; "
                   "`digest send` resumes them", err=True)


@click.command()
@click.argument("edition", type=click.IntRange(min=1), required=False)
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True,
              help="How many editions to show (not with EDITION).")
@pass_ctx
def history(ctx: Context, edition: int | None, limit: int) -> None:
    """List past digest editions with their delivery counts.

    unknown: messages whose reply was lost after their data (the server may
    have them); sent once more later, then left unconfirmed. With EDITION:
    its failed, deferred and unknown deliveries, and those a bounce report or
    complaint that arrived later names, one per line, with the reply.
    """
    if edition is not None:
        source = click.get_current_context().get_parameter_source("limit")
        if source is not None and source != click.core.ParameterSource.DEFAULT:
            raise click.UsageError("use either EDITION (its problem deliveries, all of them) or "
                                   "--limit (how many editions to list)")
        _edition_problems(ctx, edition)
        return
    with ctx.store() as store:
        rows = edition_history(store, limit)
    if not rows:
        ctx.echo("no editions yet")
        return
    ctx.echo(f"{'#':>5}  {'created (UTC)':<16}  {'status':<7}  {'articles':>8}  "
             f"{'recipients':>10}  {'sent':>6}  {'failed':>6}  {'skipped':>7}  {'pending':>7}  "
             f"{'unknown':>7}")
    for r in rows:
        created = r.created_at.strftime("%Y-%m-%d %H:%M")
        ctx.echo(f"{r.id:>5}  {created:<16}  {r.status:<7}  {r.article_count:>8}  "
                 f"{r.recipient_count:>10}  {r.sent:>6}  {r.failed:>6}  {r.skipped:>7}  "
                 f"{r.pending:>7}  {r.unknown:>7}")


def _edition_problems(ctx: Context, edition: int) -> None:
    with ctx.store() as store:
        if not edition_exists(store, edition):
            raise click.BadParameter(f"there is no edition {edition} (see `digest history`)",
                                     param_hint="EDITION")
        rows = problems(store, edition)
    for p in rows:
        shown = "deferred" if p.status == "pending" else str(p.status)
        click.echo(f"{p.recipient}\t{shown}\t{p.attempts}\t{p.updated_at:%Y-%m-%d %H:%M}\t"
                   f"{p.reply}")
    ctx.note(f"edition {edition}: {len(rows)} failed, deferred, unknown or reported "
             "deliveries")


class _ProgressBar:
    """A click progress bar on stderr, made when the total is known."""

    def __init__(self, ctx: Context) -> None:
        self.enabled = not ctx.quiet
        self._bar: Any = None
        self._done = 0

    def __enter__(self) -> _ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.render_finish()

    def update(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self._bar is None:
            self._bar = click.progressbar(length=max(total, done), label="sending",
                                          file=sys.stderr, show_pos=True)
            self._bar.__enter__()
        self._bar.update(done - self._done)
        self._done = done
