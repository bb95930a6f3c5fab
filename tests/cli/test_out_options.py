"""Every `--out` that names a file or folder the command cannot write is an error naming
`--out` and the path, exit 1, never a traceback (preview, subscribers export,
send --dry-run wrote a Python OSError traceback)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import REPO, base_env, digest_cli


@pytest.mark.parametrize("command", [
    ["preview", "--out"],
    ["subscribers", "export", "--out"],
    ["send", "--dry-run", "--out"],
])
def test_out_that_cannot_be_written_is_a_clear_error(tmp_path: Path,
                                                     command: list[str]) -> None:
    shutil.copytree(REPO / "articles", tmp_path / "articles")
    env = base_env(tmp_path)
    assert digest_cli("publish", cwd=tmp_path, env=env).returncode == 0
    assert digest_cli("subscribers", "add", "ann@example.org", cwd=tmp_path,
                      env=env).returncode == 0
    (tmp_path / "a-file").write_text("not a folder\n")
    target = tmp_path / "a-file" / "out"  # under a regular file: no one can write there
    result = digest_cli(*command, str(target), cwd=tmp_path, env=env)
    assert result.returncode == 1, result.stderr
    assert f"error: --out {target}: cannot write (Not a directory)" in result.stderr
    assert "hint: check that its folder exists" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
