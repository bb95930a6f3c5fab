"""Build hook: ship the top-level templates/ and .env.example inside the package.

The repository keeps one copy of the built-in templates, in templates/ at the top
(where a site's own TEMPLATES_DIR sits too). At build time they are put into the
package as ``digest/_data/templates/`` and ``digest/_data/env.example``, where
``importlib.resources`` and Jinja2's PackageLoader find them: copied into a wheel,
symlinked into the checkout for an editable install (so template edits show at once).
All metadata is in pyproject.toml.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
# (source in the repository, destination inside the package)
DATA = (("templates", "_data/templates"), (".env.example", "_data/env.example"))


class BuildPyWithData(build_py):
    """build_py, plus the package data that lives outside the package folder."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            self._link_into_checkout()
        else:
            self._copy_into_build()

    def _copy_into_build(self) -> None:
        package = Path(self.build_lib) / "digest"
        for source, target in DATA:
            src, dst = ROOT / source, package / target
            if dst.is_dir() and not dst.is_symlink():
                shutil.rmtree(dst)
            elif dst.exists() or dst.is_symlink():
                dst.unlink()
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src.is_dir():
                shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", ".*"))
            else:
                shutil.copyfile(src, dst)

    def _link_into_checkout(self) -> None:
        package = ROOT / "digest"
        for source, target in DATA:
            dst = package / target
            dst.parent.mkdir(parents=True, exist_ok=True)
            relative = os.path.relpath(ROOT / source, dst.parent)
            if dst.is_symlink() and os.readlink(dst) == relative:
                continue
            if dst.is_symlink() or dst.is_file():
                dst.unlink()
            elif dst.is_dir():
                shutil.rmtree(dst)
            dst.symlink_to(relative, target_is_directory=(ROOT / source).is_dir())


setup(cmdclass={"build_py": BuildPyWithData})
