"""`digest preview` says when a publish is due before the digest can show new articles."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.conftest import REPO, digest_cli

NOTE = "changed since the last publish"


def test_preview_says_when_articles_changed_since_the_last_publish(tmp_path: Path) -> None:
    shutil.copytree(REPO / "articles", tmp_path / "articles")
    env = {"SECRET_KEY": "k" * 32, "DIGEST_FROM": "News <news@example.org>",
           "BASE_URL": "https://example.org/news/"}
    out = tmp_path / "preview.html"
    assert digest_cli("publish", cwd=tmp_path, env=env).returncode == 0
    fresh = digest_cli("preview", "--out", str(out), cwd=tmp_path, env=env)
    assert fresh.returncode == 0, fresh.stderr
    assert NOTE not in fresh.stderr

    (tmp_path / "articles" / "later.md").write_text(
        "---\ntitle: Written after the publish\ndate: 2024-05-06\n---\nNot yet published.\n")
    stale = digest_cli("preview", "--out", str(out), cwd=tmp_path, env=env)
    assert stale.returncode == 0, stale.stderr
    assert NOTE in stale.stderr and "digest publish" in stale.stderr
    assert "Written after the publish" not in out.read_text("utf-8")

    assert digest_cli("publish", cwd=tmp_path, env=env).returncode == 0
    again = digest_cli("preview", "--out", str(out), cwd=tmp_path, env=env)
    assert NOTE not in again.stderr
    assert "Written after the publish" in out.read_text("utf-8")
