"""The README and .env.example document every command and every setting."""

from __future__ import annotations

import re

import click

from digest.cli.main import cli
from digest.settings import SPECS
from tests.conftest import REPO

README = (REPO / "README.md").read_text()


def _commands(group: click.Group, prefix: str = "digest") -> list[tuple[str, click.Command]]:
    found = []
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, f"{prefix} {name} is listed but cannot be loaded"
        found.append((f"{prefix} {name}", command))
        if isinstance(command, click.Group):
            found.extend(_commands(command, f"{prefix} {name}"))
    return found


def test_every_command_has_help_and_is_in_the_readme() -> None:
    for name, command in _commands(cli):
        assert command.help, f"{name} has no help text"
        assert f"`{name}" in README, f"{name} is not documented in README.md"


def test_every_setting_is_in_the_readme_and_env_example() -> None:
    example = (REPO / ".env.example").read_text()
    names = re.findall(r"^([A-Z_]+)=", example, re.MULTILINE)
    documented = set(names)
    twice = sorted(n for n in documented if names.count(n) > 1)
    assert not twice, f"set more than once in .env.example (the later one wins): {twice}"
    for spec in SPECS:
        assert f"| `{spec.env}` |" in README, f"{spec.env} missing from the README table"
        assert spec.env in documented, f"{spec.env} missing from .env.example"


def test_readme_quick_start_commands_exist() -> None:
    makefile = (REPO / "Makefile").read_text()
    for target in ("demo", "test"):
        assert f"make {target}" in README
        assert re.search(rf"^{target}:", makefile, re.MULTILINE)
    assert "make test" in (REPO / ".ci" / "run").read_text()
