"""The Jinja2 environment: TEMPLATES_DIR first, then the templates shipped with digest.

Autoescaping is on for HTML and XML; undefined variables are errors, so a
typo in a template fails the publish instead of printing an empty string.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2

from digest.errors import TemplateError

# The templates that ship with digest: the repository's templates/ folder.
BUILTIN_DIR = Path(__file__).resolve().parent.parent / "templates"


def environment(templates_dir: Path | None) -> jinja2.Environment:
    folders = [str(p) for p in (templates_dir, BUILTIN_DIR) if p is not None and p.is_dir()]
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(list(dict.fromkeys(folders))),
        autoescape=jinja2.select_autoescape(["html", "htm", "xml", "xsl"]),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env


def render(env: jinja2.Environment, name: str, context: Mapping[str, Any]) -> str:
    """Render one template, turning Jinja2's errors into a TemplateError naming the file."""
    try:
        return env.get_template(name).render(context)
    except jinja2.TemplateNotFound as exc:
        raise TemplateError(f"template {exc.name} not found",
                            "restore it in TEMPLATES_DIR or remove the setting to use the "
                            "built-in templates") from exc
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"template {exc.filename or name}, line {exc.lineno}: {exc.message}",
                            "fix the template syntax") from exc
    except jinja2.TemplateError as exc:
        raise TemplateError(f"template {name}: {exc}",
                            "check the variable names the template uses (see README)") from exc


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
