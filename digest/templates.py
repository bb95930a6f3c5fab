"""The one Jinja2 environment: TEMPLATES_DIR first, then the templates shipped with digest.

Site pages, feeds' stylesheet and the digest mail all come from here.
Autoescaping is on for HTML and XML; undefined variables are errors, so a typo
in a template fails the publish or send instead of printing an empty string,
and the error names the template file and line.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from datetime import date, datetime
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from types import TracebackType
from typing import Any

import jinja2

from digest.errors import TemplateError, shown_path

# The templates that ship with digest, inside the package: setup.py puts the repository's
# top-level templates/ there (copied into a wheel, symlinked for an editable install).
BUILTIN_PACKAGE = "digest"
BUILTIN_PATH = "_data/templates"


def _missing_builtins() -> TemplateError:
    return TemplateError("the built-in templates are missing from the installed package",
                         "reinstall digest (`pip install --force-reinstall digest-publisher`; "
                         "from a clone: `make install`)")


def builtin_files() -> Iterator[Traversable]:
    """The built-in templates (and feed.xsl, style.css) as package resources, sorted by name."""
    folder = resources.files(BUILTIN_PACKAGE).joinpath(*BUILTIN_PATH.split("/"))
    if not folder.is_dir():
        raise _missing_builtins()
    yield from sorted((f for f in folder.iterdir() if f.is_file() and not f.name.startswith(".")),
                      key=lambda f: f.name)


def environment(templates_dir: Path | None) -> jinja2.Environment:
    """TEMPLATES_DIR's templates first (one by one), then the built-in ones."""
    loaders: list[jinja2.BaseLoader] = []
    if templates_dir is not None and templates_dir.is_dir():
        loaders.append(jinja2.FileSystemLoader(str(templates_dir)))
    try:
        loaders.append(jinja2.PackageLoader(BUILTIN_PACKAGE, BUILTIN_PATH))
    except ValueError as exc:  # the folder is not in the package
        raise _missing_builtins() from exc
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=jinja2.select_autoescape(["html", "htm", "xml", "xsl"]),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        # Each publish or send makes a new environment, so edits still take effect; within
        # one, checking the template files' mtimes at every render would double its cost.
        auto_reload=False,
    )
    env.filters.update(_DATE_FILTERS)
    return env


def _isoformat(moment: date) -> str:
    return moment.isoformat()


def _strftime(moment: date, pattern: str) -> str:
    return moment.strftime(pattern)


def _day(moment: datetime) -> date:
    return moment.date()


# `{{ entry.published|isoformat }}` is `{{ entry.published.isoformat() }}`, and so on: a
# filter is called directly, a method through Jinja's context.call, three times the cost,
# which adds up in listings of thousands of entries.
_DATE_FILTERS = {"isoformat": _isoformat, "strftime": _strftime, "day": _day}


def render(env: jinja2.Environment, name: str, context: Mapping[str, Any]) -> str:
    """Render template `name`; any failure is a TemplateError naming file and line."""
    try:
        template = env.get_template(name)
    except jinja2.TemplateNotFound as exc:
        raise TemplateError(f"template {name} not found",
                            "put it in TEMPLATES_DIR or remove the broken override") from exc
    except jinja2.TemplateSyntaxError as exc:
        where = f"{shown_path(exc.filename or name)}, line {exc.lineno}"
        raise TemplateError(f"{where}: {exc.message}",
                            "fix the template syntax (see the Jinja2 documentation)") from exc
    try:
        return template.render(context)
    except jinja2.TemplateError as exc:
        line = _template_line(exc.__traceback__, template.filename)
        where = shown_path(template.filename or name) + (f", line {line}" if line else "")
        hint = ("use only the variables listed in the built-in template's header comment"
                if isinstance(exc, jinja2.UndefinedError) else "fix the template")
        raise TemplateError(f"{where}: {exc.message or exc}", hint) from exc
    except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
        line = _template_line(exc.__traceback__, template.filename)
        where = shown_path(template.filename or name) + (f", line {line}" if line else "")
        raise TemplateError(f"{where}: {type(exc).__name__}: {exc}", "fix the template") from exc


def _template_line(tb: TracebackType | None, filename: str | None) -> int | None:
    """The last line of the template that ran before the error (Jinja2 maps frames)."""
    line = None
    while tb is not None:
        if filename and tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def fingerprint(env: jinja2.Environment) -> str:
    """A hash of every template the environment can load: changes when any template does."""
    digest = hashlib.blake2b(digest_size=16)
    loader = env.loader
    assert loader is not None
    for name in sorted(env.list_templates()):
        source, filename, _ = loader.get_source(env, name)
        digest.update(f"{name}\0{filename}\0".encode())
        digest.update(source.encode("utf-8", "surrogateescape"))
    return digest.hexdigest()
