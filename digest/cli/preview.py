"""Command: preview, the HTML of the next digest (and whether a publish is due first)."""

from __future__ import annotations

import tempfile
import webbrowser
from pathlib import Path

import click

from digest.addresses import normalize_address
from digest.cli.support import Context, now, pass_ctx, writing
from digest.errors import DigestError
from digest.mail.for_subscriber import subscriber_view, view_html
from digest.mail.previews import preview_html
from digest.publish.build import unpublished_changes


@click.command()
@click.option("--out", "out_file", type=click.Path(path_type=Path, dir_okay=False),
              help="Write the HTML here (default: a new private file in the temporary folder).")
@click.option("--open", "open_browser", is_flag=True, help="Open it in a web browser.")
@click.option("--for", "for_address", metavar="ADDRESS",
              help="The digest as this subscriber will get it: only the articles their topics "
                   "and cadence give them (default: the whole edition).")
@pass_ctx
def preview(ctx: Context, out_file: Path | None, open_browser: bool,
            for_address: str | None) -> None:
    """Write the HTML of the next digest to a file and print its path.

    With --for ADDRESS, the HTML of that subscriber's own message, as `digest
    send` will build it. When it would send them nothing (their topics match
    nothing new, a weekly reader's day has not come, nothing is new at all),
    no file is written and the command says why, exiting 0. An address not
    on the list is an error (exit 1).
    """
    reader = normalize_address(for_address, "--for") if for_address is not None else None
    with ctx.store() as store:
        if reader is None:
            html = preview_html(ctx.settings, store, now())
        else:
            view = subscriber_view(ctx.settings, store, reader, now())
            if view.message is None:
                click.echo(f"no preview: {view.why_not}", err=True)
                return
            html = view_html(ctx.settings, view)
        try:
            stale = unpublished_changes(ctx.settings, store, now())
        except DigestError:  # no articles folder here, say: the preview stands on its own
            stale = False
    if out_file is not None:
        path = out_file
        with writing("--out", path):
            path.write_text(html, encoding="utf-8")
    else:  # a new private file (mode 0600): never one shared by every site and user
        handle, name = tempfile.mkstemp(prefix="digest-preview-", suffix=".html")
        path = Path(name)
        with open(handle, "w", encoding="utf-8") as file:
            file.write(html)
    click.echo(str(path))
    if stale:
        click.echo("note: articles or settings changed since the last publish, and the digest "
                   "lists published articles only; run `digest publish` first to include them",
                   err=True)
    if open_browser:
        webbrowser.open(path.resolve().as_uri())
