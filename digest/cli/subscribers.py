"""Command group: subscribers (add, remove, list, reactivate, import, export)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from digest import exit_codes
from digest.addresses import normalize_address, split_named
from digest.cli.support import Context, now, pass_ctx, writing
from digest.errors import SubscriberError
from digest.mail.choices import CADENCES, cadence_from_text, topics_from_text
from digest.mail.send import check_send_settings
from digest.mail.smtp import PermanentFailure, SMTPMailer, TemporaryFailure
from digest.mail.subscriber_csv import import_rows, read_subscriber_file, write_csv
from digest.mail.subscribers import (
    STATUSES,
    Choices,
    SubscribeReport,
    count_by_status,
    forget,
    list_subscribers,
    reactivate,
    subscribe_many,
    unsubscribe,
)
from digest.mail.welcome import send_welcome
from digest.store.database import Store
from digest.words import plural


@click.group()
def subscribers() -> None:
    """Manage the digest's subscribers (kept in the state store)."""


_WELCOME = click.option("--welcome", is_flag=True,
                        help="Mail the welcome message (welcome.txt/.html) to the addresses "
                             "this subscribes.")


@subscribers.command("add")
@click.argument("addresses", nargs=-1, required=True)
@click.option("--resubscribe", is_flag=True,
              help="Subscribe again addresses that unsubscribed (only with their consent).")
@click.option("--topics", metavar="TAGS",
              help="Comma separated tags the addresses get articles of (default: everything).")
@click.option("--cadence", type=click.Choice(CADENCES),
              help="every digest (default), or weekly (on WEEKLY_DAY).")
@_WELCOME
@pass_ctx
def add(ctx: Context, addresses: tuple[str, ...], resubscribe: bool, welcome: bool,
        topics: str | None, cadence: str | None) -> None:
    """Subscribe ADDRESSES ('name@example.org' or 'Name <name@example.org>').

    With --topics or --cadence, also sets it on addresses already subscribed; the one
    not given stays as it was for them (new addresses get everything, every digest).
    """
    choices = None
    if topics is not None or cadence is not None:
        given = frozenset(name for name, value in (("topics", topics), ("cadence", cadence))
                          if value is not None)
        choices = Choices(topics_from_text(topics or "", "--topics"),
                          cadence_from_text(cadence or "", "--cadence"), given)
    entries = []
    for number, text in enumerate(addresses, start=1):
        name, address = split_named(text)
        entries.append((normalize_address(address, f"address {number}"), name))
    if welcome:
        check_send_settings(ctx.settings)
    with ctx.store() as store:
        report = subscribe_many(store, entries, now(), source="cli", resubscribe=resubscribe,
                                choices=choices)
        _report_subscribe(ctx, report)
        changed = (set(report.unchanged) | set(report.subscribed)) - set(report.added)
        if choices is not None and changed:
            what = " and ".join(name for name in ("topics", "cadence") if name in choices.given)
            ctx.echo(f"{what} set for {plural(len(changed), 'address', 'addresses')} "
                     "already on the list")
        if welcome:
            _send_welcomes(ctx, store, report)


@subscribers.command("remove")
@click.argument("addresses", nargs=-1, required=True)
@click.option("--forget", "erase", is_flag=True,
              help="Delete the addresses from the list instead of keeping them as unsubscribed.")
@pass_ctx
def remove(ctx: Context, addresses: tuple[str, ...], erase: bool) -> None:
    """Unsubscribe ADDRESSES (kept as unsubscribed, so imports skip them)."""
    checked = [normalize_address(a, f"address {i}") for i, a in enumerate(addresses, start=1)]
    with ctx.store() as store:
        for address in checked:
            if erase:
                done = forget(store, address)
                ctx.echo(f"{address}: {'deleted' if done else 'not on the list'}")
            else:
                done = unsubscribe(store, address, now())
                ctx.echo(f"{address}: {'unsubscribed' if done else 'was not subscribed'}")


@subscribers.command("list")
@click.option("--status", type=click.Choice(STATUSES), help="Only addresses with this status.")
@pass_ctx
def list_command(ctx: Context, status: str | None) -> None:
    """List the addresses, their status and since when.

    Bounced ones also show their bounce count and the last reply or report.
    """
    with ctx.store() as store:
        rows = list_subscribers(store, status)
        counts = count_by_status(store)
    for s in rows:
        name = f"  {s.name}" if s.name else ""
        bounce = (f"\t{plural(s.bounces, 'bounce')}: {s.last_bounce or ''}"
                  if s.status == "bounced" else "")
        reads = "" if not s.topics and s.cadence == "every" else \
            f"\t{s.cadence}: {','.join(s.topics) or 'everything'}"
        click.echo(f"{s.address}\t{s.status}\t{s.updated_at:%Y-%m-%d}{name}{bounce}{reads}")
    summary = ", ".join(f"{counts[k]} {k}" for k in STATUSES)
    ctx.note(f"{len(rows)} shown ({summary})")


@subscribers.command("reactivate")
@click.argument("addresses", nargs=-1, required=True)
@pass_ctx
def reactivate_command(ctx: Context, addresses: tuple[str, ...]) -> None:
    """Subscribe bounced ADDRESSES again (e.g. once the mailbox works again)."""
    checked = [normalize_address(a, f"address {i}") for i, a in enumerate(addresses, start=1)]
    with ctx.store() as store:
        for address in checked:
            done = reactivate(store, address, now())
            ctx.echo(f"{address}: {'subscribed again' if done else 'was not bounced'}")


@subscribers.command("import")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--resubscribe", is_flag=True,
              help="Subscribe again addresses that unsubscribed (only with their consent).")
@_WELCOME
@pass_ctx
def import_command(ctx: Context, file: Path, resubscribe: bool, welcome: bool) -> None:
    """Subscribe the addresses in FILE: a CSV (an 'email' column, else the first) or
    one address per line. Nothing is imported if any line is invalid.

    A file written by `digest subscribers export` keeps its statuses: addresses it
    lists as unsubscribed or bounced are never subscribed (new ones are recorded
    so), pending ones are skipped.
    """
    rows = read_subscriber_file(file)
    if not rows:
        raise SubscriberError(f"{file}: no addresses found",
                              "put one address per line, or a CSV with an 'email' column")
    if welcome:
        check_send_settings(ctx.settings)
    with ctx.store() as store:
        report = import_rows(store, rows, now(), source="import", resubscribe=resubscribe)
        _report_subscribe(ctx, report.subscribed)
        if welcome:
            _send_welcomes(ctx, store, report.subscribed)
    if report.recorded or report.left or report.skipped_pending:
        ctx.echo(f"{len(report.recorded)} recorded as unsubscribed or bounced, "
                 f"{len(report.left)} listed as unsubscribed or bounced left as they were, "
                 f"{len(report.skipped_pending)} pending skipped")


@subscribers.command("export")
@click.option("--status", type=click.Choice(STATUSES), help="Only addresses with this status.")
@click.option("--out", "out_file", type=click.Path(path_type=Path, dir_okay=False),
              help="Write to this file instead of standard output.")
@pass_ctx
def export_command(ctx: Context, status: str | None, out_file: Path | None) -> None:
    """Write the subscribers as CSV, the format `digest subscribers import` reads back.

    Columns: email, name, status, topics, cadence, subscribed_at, bounces.
    """
    with ctx.store() as store:
        rows = list_subscribers(store, status)
    if out_file is None:
        count = write_csv(rows, sys.stdout)
    else:
        with writing("--out", out_file), out_file.open("w", encoding="utf-8",
                                                      newline="") as out:
            count = write_csv(rows, out)
    ctx.note(f"{count} exported")


def _send_welcomes(ctx: Context, store: Store, report: SubscribeReport) -> None:
    """The welcome mail to each address the command subscribed, over one SMTP session."""
    addresses = [*report.added, *report.subscribed]
    if not addresses:
        return
    mailer = SMTPMailer(ctx.settings)
    sent = 0
    try:
        for address in addresses:
            try:
                send_welcome(ctx.settings, store, mailer, address, now())
                sent += 1
            except (TemporaryFailure, PermanentFailure) as exc:
                click.echo(f"  welcome mail to {address} not sent: {exc.reply}", err=True)
    finally:
        mailer.close()
    ctx.echo(f"{sent} welcome mails sent")
    if sent < len(addresses):
        sys.exit(exit_codes.PROBLEMS)


def _report_subscribe(ctx: Context, report: SubscribeReport) -> None:
    ctx.echo(f"{len(report.added)} added, {len(report.subscribed)} subscribed again or "
             f"confirmed, {len(report.unchanged)} already subscribed, "
             f"{len(report.kept_unsubscribed)} kept unsubscribed")
    for address in report.kept_unsubscribed:
        click.echo(f"  kept unsubscribed: {address} (use --resubscribe only with their consent)",
                   err=True)
    for address in report.kept_bounced:
        click.echo(f"  kept bounced: {address} (`digest subscribers reactivate` takes it back)",
                   err=True)
