"""The `digest` command: a click group whose commands are imported when they run.

Library errors (:class:`digest.errors.DigestError`) become a one-line message
and a hint on stderr, with the traceback only under ``--debug``.

`digest --version` and `digest --help` import no command module: the table
below names each command's module and the first paragraph of its help (a test
checks that it matches the command's docstring), as pip does for its commands.
Running a command imports its module only, so publishing never loads the web
server and serving never loads feedgen or the process pool.
"""

from __future__ import annotations

import importlib
import logging
import sys
from pathlib import Path
from typing import Any, NamedTuple

import click

from digest import __version__, exit_codes
from digest.cli.support import Context
from digest.errors import DigestError


class Lazy(NamedTuple):
    target: str  # "module:attribute" of the click command
    summary: str  # the first paragraph of its help, for `digest --help`


COMMANDS: dict[str, Lazy] = {
    "bounces": Lazy("digest.cli.bounces:bounces",
                    "Read returned messages (bounces, complaints) and update the subscribers."),
    "check": Lazy("digest.cli.publish:check",
                  "Read every article and template and report all problems; write nothing."),
    "history": Lazy("digest.cli.mail:history",
                    "List past digest editions with their delivery counts."),
    "init": Lazy("digest.cli.init:init",
                 "Make a new site in DIRECTORY (default: here): example articles, .env and "
                 ".gitignore."),
    "preview": Lazy("digest.cli.preview:preview",
                    "Write the HTML of the next digest to a file and print its path."),
    "publish": Lazy("digest.cli.publish:publish",
                    "Publish ARTICLES_DIR as feeds and a static site in OUTPUT_DIR."),
    "run": Lazy("digest.cli.schedule:run",
                "Publish every PUBLISH_INTERVAL and send the digest on DIGEST_SCHEDULE, "
                "until stopped."),
    "send": Lazy("digest.cli.mail:send",
                 "Build (or resume) the digest edition and mail it to every subscriber."),
    "serve": Lazy("digest.cli.serve:serve",
                  "Serve OUTPUT_DIR over HTTP, with one-click unsubscribe and the sign-up form."),
    "status": Lazy("digest.cli.status:status",
                   "Show whether `digest run` runs, and each job's next run time and last result."),
    "subscribers": Lazy("digest.cli.subscribers:subscribers",
                        "Manage the digest's subscribers (kept in the state store)."),
}


class DigestGroup(click.Group):
    """The command group: lazy commands, and DigestError turned into a message and an exit code."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        lazy = COMMANDS.get(cmd_name)
        if lazy is None:
            return None
        module_name, _, attribute = lazy.target.partition(":")
        command = getattr(importlib.import_module(module_name), attribute)
        assert isinstance(command, click.Command), lazy.target
        return command

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, global_options_first(args))

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list of `--help`, from the table: as click writes it, nothing imported."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = [(name, click.Command(name, help=COMMANDS[name].summary).get_short_help_str(limit))
                for name in names]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

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
            ctx.exit(exit_codes.INTERRUPTED)


GLOBAL_FLAGS = ("-q", "--quiet", "--debug")
GLOBAL_VALUED = ("--env-file",)


def global_options_first(args: list[str]) -> list[str]:
    """`digest publish -q` as `digest -q publish`: global options may follow the command.

    No command has options of these names, so moving them is unambiguous; nothing
    after `--` moves.
    """
    command_at = next((i for i, arg in enumerate(args) if arg in COMMANDS), None)
    if command_at is None:
        return args
    moved: list[str] = []
    rest: list[str] = []
    tail = args[command_at + 1:]
    i = 0
    while i < len(tail):
        arg = tail[i]
        if arg == "--":
            rest.extend(tail[i:])
            break
        if arg in GLOBAL_FLAGS or arg.startswith(tuple(f"{o}=" for o in GLOBAL_VALUED)):
            moved.append(arg)
        elif arg in GLOBAL_VALUED and i + 1 < len(tail):
            moved.extend(tail[i:i + 2])
            i += 1
        else:
            rest.append(arg)
        i += 1
    return [*args[:command_at], *moved, args[command_at], *rest]


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


def main() -> None:
    cli(prog_name="digest")
