"""`digest init`: a new site that publishes as it is, and never a file overwritten."""

from __future__ import annotations

import hashlib
import re
import stat
from pathlib import Path

from dotenv import dotenv_values

from digest.settings import SPECS, load_settings
from tests.conftest import REPO, digest_cli, write

FILES = ["articles/welcome.md", "articles/plain-text-example.txt", ".env", ".gitignore"]


def _tree(folder: Path) -> dict[str, str]:
    """Every file under `folder` with the hash of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_init_makes_a_site_that_publishes(tmp_path: Path) -> None:
    result = digest_cli("init", "news", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    site = tmp_path / "news"
    assert sorted(_tree(site)) == sorted(FILES)
    lines = result.stdout.splitlines()
    assert "next, in news (cd news):" in lines
    commands = [line.split("#")[0].strip() for line in lines if line.startswith("  digest ")]
    assert commands == ["digest publish", "digest serve", "digest send --to you@example.org"]

    env = (site / ".env").read_text()
    assert stat.S_IMODE((site / ".env").stat().st_mode) == 0o600
    secret = re.findall(r"^SECRET_KEY=(\S+)$", env, re.MULTILINE)
    assert len(secret) == 1 and len(secret[0]) >= 40
    for spec in SPECS:  # every setting is there, with its description
        assert spec.help in env
        if spec.env != "SECRET_KEY":
            assert re.search(rf"^# {spec.env}=", env, re.MULTILINE), spec.env
    ignored = (site / ".gitignore").read_text().splitlines()
    for entry in ("/public/", "/.public.generations/", "*.sqlite3", ".env"):
        assert entry in ignored

    published = digest_cli("publish", cwd=site)
    assert published.returncode == 0, published.stderr
    assert "published 2 articles: 2 new" in published.stdout
    assert (site / "public" / "feed.atom").is_file()
    assert (site / "public" / "feed.xsl").is_file()

    again = digest_cli("init", cwd=site)  # a second init in the same site
    assert again.returncode == 1


def test_every_commented_setting_is_the_default(tmp_path: Path) -> None:
    """Uncommenting every line of the new .env changes nothing: the defaults are right."""
    assert digest_cli("init", cwd=tmp_path).returncode == 0
    text = (tmp_path / ".env").read_text()
    uncommented = re.sub(r"^# ([A-Z_]+=)", r"\1", text, flags=re.MULTILINE)
    path = write(tmp_path / "all.env", uncommented)
    values = {k: v for k, v in dotenv_values(path).items() if v is not None}
    assert set(values) == {spec.env for spec in SPECS}
    secret = values.pop("SECRET_KEY")
    assert load_settings(values, tmp_path) == load_settings({}, tmp_path)
    assert load_settings({"SECRET_KEY": secret}, tmp_path).secret_key == secret


def test_init_templates_copies_the_builtin_set(tmp_path: Path) -> None:
    result = digest_cli("init", "--templates", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    builtin = _tree(REPO / "templates")
    copied = _tree(tmp_path / "templates")
    assert copied == builtin and "feed.xsl" in copied and "style.css" in copied


def test_init_into_an_existing_site_refuses_and_changes_nothing(tmp_path: Path) -> None:
    write(tmp_path / ".gitignore", "my own rules\n")
    write(tmp_path / "articles" / "welcome.md", "---\ntitle: Mine\ndate: 2024-01-01\n---\nMine.\n")
    write(tmp_path / "notes.txt", "untouched\n")
    before = _tree(tmp_path)

    result = digest_cli("init", "--templates", str(tmp_path), cwd=tmp_path)

    assert result.returncode == 1
    assert "articles/welcome.md, .gitignore already exist" in result.stderr
    assert "nothing was written" in result.stderr
    assert _tree(tmp_path) == before
    assert not (tmp_path / "templates").exists() and not (tmp_path / ".env").exists()


def test_init_refuses_one_existing_env(tmp_path: Path) -> None:
    write(tmp_path / ".env", "SECRET_KEY=keep-me\n")
    result = digest_cli("init", cwd=tmp_path)
    assert result.returncode == 1
    assert ".: .env already exists" in result.stderr
    assert (tmp_path / ".env").read_text() == "SECRET_KEY=keep-me\n"
    assert sorted(_tree(tmp_path)) == [".env"]
