"""The `digest` command: a click group of the commands in the cli_* modules.

Library errors (:class:`digest.errors.DigestError`) become a one-line message
and a hint on stderr, with the traceback only under ``--debug``.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import click

from digest import __version__
from digest.cli import mail as cli_mail
from digest.cli import publish as cli_publish
from digest.cli import schedule as cli_schedule
from digest.cli import serve as cli_serve
from digest.cli.support import Context
from digest.errors import DigestError


class DigestGroup(click.Group):
    """A click group that turns DigestError into a message and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DigestError as exc:
            debug = bool(ctx.obj and ctx.obj.debug) or "--debug" in sys.argv
            if debug:
                raise
            click.secho(f"error: {exc.message}", fg="red", err=True)
            if exc.hint:
                click.echo(f"  hint: {exc.hint}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)


@click.group(cls=DigestGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="digest")
@click.option("--env-file", type=click.Path(path_type=Path, dir_okay=False),
              help="Read settings from this file instead of ./.env.")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.option("-q", "--quiet", is_flag=True, help="Print only errors.")
@click.pass_context
def cli(ctx: click.Context, env_file: Path | None, debug: bool, quiet: bool) -> None:
    """Publish articles/ as feeds and a static site, and mail a digest.

    Settings come from the environment and ./.env (see .env.example).
    """
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not debug:
        logging.getLogger("digest").setLevel(logging.WARNING)
    ctx.obj = Context(env_file=env_file, debug=debug, quiet=quiet)


for _module in (cli_publish, cli_mail, cli_schedule, cli_serve):
    for _command in _module.COMMANDS:
        cli.add_command(_command)


def main() -> None:
    cli(prog_name="digest")
