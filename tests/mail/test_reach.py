"""BASE_URL as the digest's readers meet it: links to this machine, or one-click unsubscribe
over plain http, are said before anything is mailed (a warning: trying digest out locally
is legitimate)."""

from __future__ import annotations

from pathlib import Path

import pytest

from digest.mail.reach import base_url_warnings
from tests.conftest import SAMPLE, base_env, digest_cli, write


@pytest.mark.parametrize(("url", "kind"), [
    ("http://127.0.0.1:8080/", "this machine"), ("http://localhost/news/", "this machine"),
    ("https://LOCALHOST:8443/", "this machine"), ("http://[::1]:8080/", "this machine"),
    ("https://127.1.2.3/", "this machine"), ("http://site.localhost/", "this machine"),
    ("http://news.example.org/", "plain http"), ("http://192.168.1.10/", "plain http"),
    ("https://news.example.org/", None), ("https://localhost.example.org/", None),
])
def test_base_url_warnings(url: str, kind: str | None) -> None:
    found = base_url_warnings(url)
    assert [kind in w for w in found] == ([True] if kind else [])
    assert all(w.startswith(f"BASE_URL is {url}") for w in found)


def project(tmp_path: Path, base_url: str) -> dict[str, str]:
    write(tmp_path / "articles" / SAMPLE.name, SAMPLE.read_bytes())
    return {**base_env(tmp_path), "BASE_URL": base_url,
            "DIGEST_RECIPIENTS": "ann@example.org"}


def test_send_warns_of_links_to_this_machine_and_not_of_a_public_site(tmp_path: Path) -> None:
    env = project(tmp_path, "http://127.0.0.1:8080/")
    result = digest_cli("send", "--dry-run", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "warning: BASE_URL is http://127.0.0.1:8080/: every link in the digest" in \
        result.stderr
    assert "set BASE_URL to the public address of the site" in result.stderr
    quiet = digest_cli("-q", "send", "--dry-run", cwd=tmp_path, env=env)
    assert "warning" not in quiet.stderr

    public = digest_cli("send", "--dry-run", cwd=tmp_path,
                        env={**env, "BASE_URL": "https://news.example.org/"})
    assert public.returncode == 0, public.stderr
    assert "warning" not in public.stderr


def test_run_logs_the_warning_when_it_will_mail(tmp_path: Path) -> None:
    env = {**project(tmp_path, "http://localhost:8080/"), "DATABASE_URL": "sqlite:///s.sqlite3"}
    result = digest_cli("run", "--once", cwd=tmp_path, env=env)
    assert "BASE_URL is http://localhost:8080/: every link in the digest" in result.stderr
    without_mail = digest_cli("run", "--once", cwd=tmp_path, env={**env, "DIGEST_FROM": ""})
    assert "BASE_URL is" not in without_mail.stderr
