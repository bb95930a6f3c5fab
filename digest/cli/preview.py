"""Command: preview, the HTML of the next digest (and whether a publish is due first)."""

from __future__ import annotations

import tempfile
import webbrowser
from pathlib import Path

import click

from digest.cli.support import Context, now, pass_ctx
from digest.errors import DigestError
from digest.mail.previews import preview_html
from digest.publish.build import unpublished_changes


@click.command()
@click.option("--out", "out_file", type=click.Path(path_type=Path, dir_okay=False),
              help="Write the HTML here (default: a new private file in the temporary folder).")
@click.option("--open", "open_browser", is_flag=True, help="Open it in a web browser.")
@pass_ctx
def preview(ctx: Context, out_file: Path | None, open_browser: bool) -> None:
    """Write the HTML of the next digest to a file and print its path."""
    with ctx.store() as store:
        html = preview_html(ctx.settings, store, now())
        try:
            stale = unpublished_changes(ctx.settings, store, now())
        except DigestError:  # no articles folder here, say: the preview stands on its own
            stale = False
    if out_file is not None:
        path = out_file
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
