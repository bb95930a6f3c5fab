"""`digest --version` and `--help` stay fast: they import no heavy library, and each
command imports only what it needs. Asserted on the modules imported, not on timing."""

from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest

from digest.cli.main import COMMANDS, cli

HEAVY = ("sqlalchemy", "feedgen", "apscheduler", "uvicorn", "starlette", "nh3", "lxml",
         "psycopg", "jinja2", "markdown_it", "css_inline", "concurrent.futures.process")
WEB = ("uvicorn", "starlette", "digest.web")
PUBLISHER = ("feedgen", "concurrent.futures.process", "multiprocessing.pool", "digest.publish")


def _imported_after(code: str) -> set[str]:
    """The modules loaded by a fresh interpreter that runs `code`."""
    script = (f"import sys\n{code}\n"
              "import json; print(json.dumps(sorted(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True)
    return set(json.loads(done.stdout.splitlines()[-1]))


def _loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in names))


def _run_cli(args: list[str]) -> str:
    return ("from digest.cli.main import cli\n"
            "try:\n"
            f"    cli({args!r}, prog_name='digest')\n"
            "except SystemExit:\n"
            "    pass\n"
            "print()")


@pytest.mark.parametrize("args", [["--version"], ["--help"]])
def test_version_and_help_import_no_heavy_module(args: list[str]) -> None:
    modules = _imported_after(_run_cli(args))
    assert _loaded(modules, HEAVY) == []
    assert _loaded(modules, ("digest.cli.publish", "digest.cli.mail", "digest.cli.subscribers",
                             "digest.cli.schedule", "digest.cli.serve", "digest.cli.status",
                             "digest.settings", "digest.store")) == []


def test_a_mail_command_imports_neither_the_web_server_nor_the_publisher() -> None:
    modules = _imported_after(_run_cli(["subscribers", "--help"]))
    assert "digest.cli.subscribers" in modules
    assert _loaded(modules, WEB + PUBLISHER) == []


def test_publishing_never_imports_the_web_server() -> None:
    modules = _imported_after("import digest.cli.publish")
    assert _loaded(modules, WEB) == []


def test_serving_never_imports_feedgen_or_the_process_pool() -> None:
    modules = _imported_after("import digest.cli.serve, digest.web.app")
    assert _loaded(modules, PUBLISHER) == []


def test_settings_import_neither_sqlalchemy_nor_apscheduler() -> None:
    modules = _imported_after("import digest.settings")
    assert _loaded(modules, ("sqlalchemy", "apscheduler")) == []


def test_the_lazy_table_matches_each_command() -> None:
    """`--help` lists the table's summaries: each must be its command's first paragraph."""
    ctx = click.Context(cli)
    assert cli.list_commands(ctx) == sorted(COMMANDS)
    for name, lazy in COMMANDS.items():
        command = cli.get_command(ctx, name)
        assert command is not None and command.name == name, name
        assert command.help is not None, name
        first = " ".join(command.help.partition("\n\n")[0].split())
        assert lazy.summary == first, f"{name}: update the summary in digest/cli/main.py"
    assert cli.get_command(ctx, "no-such-command") is None
