"""The distributions as a stranger gets them: built, checked, installed into a fresh venv
outside the checkout, and used from an empty folder, from `digest init` to a digest in a
(local aiosmtpd) inbox and `digest serve` answering.

Nothing here may come from the repository checkout but the build itself: the commands run
in a temporary folder with PYTHONPATH unset, and the test checks that `digest` is imported
from the new venv.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from digest.settings import ENV_NAMES
from tests.conftest import REPO, wait_for
from tests.fixtures_mail import SMTPServer, free_port, start_server

pytestmark = pytest.mark.slow

DIST_NAME = "digest-publisher"


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None,
         timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def _warnings(output: str) -> list[str]:
    """Warning lines of a build, less pip's notes about this machine's extra index folders."""
    return [line for line in output.splitlines()
            if re.search(r"warn", line, re.IGNORECASE)
            and not line.startswith("WARNING: Location 'file:")]


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist and the wheel, built as `python -m build` builds them (sdist, then the wheel
    from the sdist), with no warning, and passing `twine check`."""
    out = tmp_path_factory.mktemp("dist")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    built = _run([sys.executable, "-m", "build", "--outdir", str(out), str(REPO)], REPO, env)
    assert built.returncode == 0, built.stdout + built.stderr
    assert _warnings(built.stdout + built.stderr) == []
    checked = _run([sys.executable, "-m", "twine", "check", "--strict", *map(str, out.iterdir())],
                   REPO)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    return out


@pytest.fixture(scope="module")
def venv(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment outside the checkout with the wheel (and its dependencies
    from the package index or pip's cache) installed."""
    folder = tmp_path_factory.mktemp("venv") / "venv"
    assert not folder.resolve().is_relative_to(REPO)
    made = _run([sys.executable, "-m", "venv", str(folder)], folder.parent)
    assert made.returncode == 0, made.stderr
    wheel = next(dist.glob("*.whl"))
    installed = _run([str(folder / "bin" / "python"), "-m", "pip", "install", "--quiet",
                      "--find-links", str(dist), f"{DIST_NAME}=={wheel.name.split('-')[1]}"],
                     folder.parent, _clean_env(folder))
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return folder


def _clean_env(venv: Path, **extra: str) -> dict[str, str]:
    """A user's shell with the venv activated: no PYTHONPATH, no digest settings."""
    env = {k: v for k, v in os.environ.items()
           if k not in ENV_NAMES and k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    env.update(extra)
    return env


@pytest.fixture
def smtp() -> Iterator[SMTPServer]:
    server = start_server()
    yield server
    server.controller.stop()


def test_the_wheel_carries_the_templates_the_env_example_and_the_license(dist: Path) -> None:
    wheel = next(dist.glob("*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for template in sorted(p.name for p in (REPO / "templates").iterdir()):
        assert f"digest/_data/templates/{template}" in names
    assert "digest/_data/env.example" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    metadata = zipfile.ZipFile(wheel).read(
        next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert f"Name: {DIST_NAME}" in metadata and "License-Expression: MIT" in metadata
    assert "Requires-Python: >=3.11" in metadata
    sdist = next(dist.glob("*.tar.gz")).name
    assert sdist.startswith("digest_publisher-")


def test_from_an_empty_folder_to_a_digest_in_the_inbox(venv: Path, smtp: SMTPServer,
                                                        tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    assert not site.resolve().is_relative_to(REPO)
    env = _clean_env(venv)

    def digest(*args: str, ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
        result = _run(["digest", *args], site, env, timeout=120)
        assert result.returncode in ok, f"digest {' '.join(args)}: {result.stdout}{result.stderr}"
        return result

    where = _run(["python", "-c", "import digest; print(digest.__file__)"], site, env)
    assert Path(where.stdout.strip()).resolve().is_relative_to(venv.resolve()), where.stdout
    assert (venv / "bin" / "digest").is_file()

    made = digest("init")
    assert "digest publish" in made.stdout
    port = free_port()
    with (site / ".env").open("a", encoding="utf-8") as settings:
        for key, value in {**smtp.env(), "BASE_URL": f"http://127.0.0.1:{port}/",
                           "SERVE_PORT": str(port), "SITE_TITLE": "Wheel News",
                           "DIGEST_FROM": "Wheel News <news@example.org>"}.items():
            settings.write(f"{key}={value}\n")

    assert "published 2 articles: 2 new" in digest("publish").stdout
    assert (site / "public" / "feed.xsl").is_file() and (site / "public" / "style.css").is_file()
    checked = digest("check")
    assert "2 to publish" in checked.stdout
    preview = site / "preview.html"
    assert digest("preview", "--out", str(preview)).stdout.strip() == str(preview)
    assert "Welcome to your digest" in preview.read_text()

    digest("subscribers", "add", "reader@example.org")
    sent = digest("send")
    assert re.search(r"edition 1 \(created, 2 articles, 1 recipient\S*\): 1 sent", sent.stdout), sent.stdout
    wait_for(lambda: len(smtp.received) == 1, "the digest in the inbox")
    mail = smtp.received[0].parsed()
    assert mail["Subject"] == "Wheel News: 2 new articles"
    assert "Welcome to your digest" in mail.get_body(("plain",)).get_content()
    link = re.match(r"<(http://[^>]+)>", str(mail["List-Unsubscribe"]))
    assert link and "/unsubscribe?token=" in link.group(1)

    log = (tmp_path / "serve.log").open("wb")
    with log, subprocess.Popen(["digest", "serve"], cwd=site, env=env, stdout=log,
                               stderr=subprocess.STDOUT) as server:
        url = f"http://127.0.0.1:{port}/"
        try:
            def up() -> bool:
                assert server.poll() is None, (tmp_path / "serve.log").read_text()
                try:
                    return httpx.get(url, timeout=2).status_code == 200
                except httpx.TransportError:
                    return False

            wait_for(up, "digest serve to answer", timeout=30)
            index = httpx.get(url, timeout=10)
            assert "Welcome to your digest" in index.text
            page = httpx.get(url + "articles/welcome.html", timeout=10)
            assert page.status_code == 200 and "front matter" in page.text
            feed = httpx.get(url + "feed.atom", timeout=10)
            assert feed.status_code == 200 and "<feed" in feed.text
            assert httpx.get(url + "style.css", timeout=10).status_code == 200
            asked = httpx.get(link.group(1), timeout=10)
            assert asked.status_code == 200 and "Unsubscribe" in asked.text
            done = httpx.post(link.group(1), content=b"List-Unsubscribe=One-Click", timeout=10,
                              headers={"Content-Type": "application/x-www-form-urlencoded"})
            assert done.status_code == 200
        finally:
            server.send_signal(signal.SIGTERM)
            assert server.wait(timeout=30) == 0, (tmp_path / "serve.log").read_text()
    listed = digest("subscribers", "list").stdout
    assert re.search(r"reader@example\.org\s+unsubscribed", listed), listed
    # Everything the commands wrote is in the site folder (the state store by default too).
    assert (site / "digest.sqlite3").is_file()
