"""The Jinja2 environment of the mail templates, and template errors made readable.

Templates are looked up in TEMPLATES_DIR first, then in the built-in set
(``digest/default_templates``). Autoescaping is on for ``.html`` files;
an undefined variable is an error, not an empty string.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any

import jinja2

from digest.errors import TemplateError
from digest.settings import Settings


def template_environment(settings: Settings) -> jinja2.Environment:
    loaders: list[jinja2.BaseLoader] = []
    if settings.templates_dir is not None:
        loaders.append(jinja2.FileSystemLoader(settings.templates_dir))
    loaders.append(jinja2.PackageLoader("digest", "default_templates"))
    return jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html", "htm"),
                                            default_for_string=False, default=False),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_template(env: jinja2.Environment, name: str, context: Mapping[str, Any]) -> str:
    """Render template `name`; any failure is a TemplateError naming file and line."""
    try:
        template = env.get_template(name)
    except jinja2.TemplateNotFound as exc:
        raise TemplateError(f"template {name} not found",
                            "put it in TEMPLATES_DIR or remove the broken override") from exc
    except jinja2.TemplateSyntaxError as exc:
        where = f"{exc.filename or name}, line {exc.lineno}"
        raise TemplateError(f"{where}: {exc.message}",
                            "fix the template syntax (see the Jinja2 documentation)") from exc
    try:
        return template.render(context)
    except jinja2.TemplateError as exc:
        line = _template_line(exc.__traceback__, template.filename)
        where = f"{template.filename or name}" + (f", line {line}" if line else "")
        hint = ("use only the variables listed in the built-in template's header comment"
                if isinstance(exc, jinja2.UndefinedError) else "fix the template")
        raise TemplateError(f"{where}: {exc.message or exc}", hint) from exc
    except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
        line = _template_line(exc.__traceback__, template.filename)
        where = f"{template.filename or name}" + (f", line {line}" if line else "")
        raise TemplateError(f"{where}: {type(exc).__name__}: {exc}", "fix the template") from exc


def _template_line(tb: TracebackType | None, filename: str | None) -> int | None:
    """The last line of the template that ran before the error (Jinja2 maps frames)."""
    line = None
    while tb is not None:
        if filename and tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line
