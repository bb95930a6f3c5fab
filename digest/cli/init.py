"""Command: init (a new site: example articles, a .env, a .gitignore, optionally the templates).

Nothing here reads the environment or a `.env`: the new `.env` is written from
:data:`digest.settings.SPECS` (every setting, commented out with its default and
its description), so it lists the settings this version knows, no more, no less.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from pathlib import Path

import click

from digest.cli.support import now
from digest.errors import InitError
from digest.settings import SPECS, Spec
from digest.templates import builtin_files

WELCOME_MD = """\
---
title: Welcome to your digest
date: {date}
tags: [example]
summary: An example article in Markdown with YAML front matter. Delete it before the first real digest.
---
This is an example article in **Markdown**. The lines between the `---` marks
are its front matter: `title`, `date`, `updated`, `author`, `tags`, `summary`,
`id` and `draft` are read from there.

Write your own articles beside this one in `articles/`, run `digest publish`, and
they appear on the site, in the feeds and in the next digest mail.
"""

PLAIN_TXT = """\
title An example article in plain text
date {date} The lead paragraph starts on the date line. Header lines such as
"title" above it are optional: without one, the headline is the first sentence
of this paragraph.

A Section Heading

Paragraphs are separated by blank lines, and a short line standing alone
without closing punctuation is a section heading. Delete this file before the
first real digest.
"""

ENV_HEADER = """\
# digest settings of this site, written by `digest init`. The environment overrides
# this file. Each setting is shown with its default, commented out: remove the
# leading "# " to change one. SECRET_KEY signs the unsubscribe links: keep it secret,
# and keep it (changing it invalidates the links in mail already sent).
"""

_PLAIN_VALUE = re.compile(r"^[A-Za-z0-9_./:@,+=-]*$")


@dataclass(frozen=True)
class NewFile:
    path: str  # relative to the site folder, with "/"
    text: str


def env_text(secret_key: str) -> str:
    """The new `.env`: SECRET_KEY set, every other setting commented out with its default."""
    lines = [ENV_HEADER]
    for spec in SPECS:
        lines.append(f"# {spec.help}")
        if spec.env == "SECRET_KEY":
            lines.append(f"SECRET_KEY={secret_key}")
        else:
            lines.append(f"# {spec.env}={_quoted(spec)}")
        lines.append("")
    return "\n".join(lines)


def _quoted(spec: Spec) -> str:
    value = spec.default
    if _PLAIN_VALUE.match(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def gitignore_text() -> str:
    return ("# digest: the published output, the state store and the secrets stay out of git\n"
            "/public/\n/.public.generations/\n*.sqlite3\n*.sqlite3-*\n*.sqlite3.lock\n.env\n")


def site_files(with_templates: bool) -> list[NewFile]:
    """Every file `digest init` writes, in order."""
    today = now().date().isoformat()
    files = [
        NewFile("articles/welcome.md", WELCOME_MD.format(date=today)),
        NewFile("articles/plain-text-example.txt", PLAIN_TXT.format(date=today)),
        NewFile(".env", env_text(secrets.token_urlsafe(32))),
        NewFile(".gitignore", gitignore_text()),
    ]
    if with_templates:
        files.extend(NewFile(f"templates/{f.name}", f.read_text(encoding="utf-8"))
                     for f in builtin_files())
    return files


@click.command()
@click.argument("directory", required=False, default=".",
                type=click.Path(path_type=Path, file_okay=False))
@click.option("--templates", "with_templates", is_flag=True,
              help="Also copy the built-in templates to templates/, to customise them.")
def init(directory: Path, with_templates: bool) -> None:
    """Make a new site in DIRECTORY (default: here): example articles, .env and .gitignore.

    Writes articles/ with one short example of each format, a .env with a new
    SECRET_KEY and every setting commented out with its default, and a .gitignore
    for the output, the state store and .env. It never overwrites a file: if one
    exists, it names it and writes nothing.
    """
    files = site_files(with_templates)
    existing = [f.path for f in files if (directory / f.path).exists()
                or (directory / f.path).is_symlink()]
    if existing:
        raise InitError(f"{directory}: {', '.join(existing)} already exist"
                        if len(existing) > 1 else f"{directory}: {existing[0]} already exists",
                        "nothing was written; run `digest init` in a new or empty folder, "
                        "or move those files away first")
    written: list[Path] = []
    try:
        for new in files:
            path = directory / new.path
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("x", encoding="utf-8") as handle:  # never overwrites
                written.append(path)
                handle.write(new.text)
            if new.path == ".env":
                path.chmod(0o600)  # it holds SECRET_KEY (and later the SMTP password)
    except OSError as exc:
        for path in written:
            path.unlink(missing_ok=True)
        raise InitError(f"{directory}: cannot write the new site ({exc})",
                        "check the folder's permissions; nothing was kept") from exc
    click.echo(f"made a new site in {directory}: {', '.join(f.path for f in files[:4])}"
               + (", templates/" if with_templates else ""))
    here = directory.resolve() == Path.cwd().resolve()
    click.echo("next:" if here else f"next, in {directory} (cd {directory}):")
    click.echo("  digest publish                    # write the site and feeds to public/")
    click.echo("  digest serve                      # see it at http://127.0.0.1:8080/")
    click.echo("  digest send --to you@example.org  # a test digest (set DIGEST_FROM and SMTP_* "
               "in .env first)")
