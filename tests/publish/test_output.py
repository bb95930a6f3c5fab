"""The output folder: atomic generations and paths that cannot escape it."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from digest.errors import OutputError
from digest.publish.output import Generation, current_generation, generations_dir, safe_relpath


@pytest.mark.parametrize("bad", ["", "/etc/passwd", "../x.html", "a/../../x", "a//b", "./a",
                                 "a\\..\\b", "a\x00b"])
def test_paths_that_could_leave_the_output_folder_are_refused(bad: str) -> None:
    with pytest.raises(OutputError, match="leave the output folder"):
        safe_relpath(bad)


def test_ordinary_paths_pass() -> None:
    assert safe_relpath("articles/2024/x.html") == "articles/2024/x.html"


def test_commit_swaps_the_symlink_and_keeps_one_previous_generation(tmp_path: Path) -> None:
    out = tmp_path / "public"
    for number in range(3):
        with Generation(out) as gen:
            gen.write("index.html", f"version {number}".encode())
            gen.commit()
        assert (out / "index.html").read_text() == f"version {number}"
    assert out.is_symlink()
    names = sorted(p.name for p in generations_dir(out).iterdir() if p.is_dir())
    assert names == ["g000002", "g000003"]
    assert current_generation(out) == generations_dir(out) / "g000003"


def test_an_abandoned_generation_changes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "public"
    with Generation(out) as gen:
        gen.write("index.html", b"one")
        gen.commit()
    with pytest.raises(RuntimeError), Generation(out) as gen:
        gen.write("index.html", b"two")
        raise RuntimeError("boom")
    assert (out / "index.html").read_bytes() == b"one"
    assert not [p for p in generations_dir(out).iterdir() if p.name.endswith(".partial")]


def test_a_plain_output_folder_is_replaced_by_the_first_publish(tmp_path: Path) -> None:
    out = tmp_path / "public"
    out.mkdir()
    (out / "old.html").write_text("old")
    with Generation(out) as gen:
        assert gen.keep("old.html")
        gen.write("index.html", b"new")
        gen.commit()
    assert out.is_symlink()
    assert (out / "old.html").read_text() == "old" and (out / "index.html").read_text() == "new"


def test_a_changed_file_shows_a_later_last_modified_second_than_its_previous_version(
        tmp_path: Path) -> None:
    """Last-Modified has whole seconds: a feed changed within the second its previous
    version was written in showed the same date, and a reader asking If-Modified-Since
    (newsboat) was answered "not modified". The new version moves to the next second."""
    out = tmp_path / "public"
    with Generation(out) as gen:
        gen.write("feed.atom", b"one")
        gen.write("index.html", b"same")
        gen.commit()
    ahead = int(time.time()) + 5  # the previous version written late in a second to come
    for name in ("feed.atom", "index.html"):
        os.utime(out / name, (ahead + 0.9, ahead + 0.9))
    unchanged = (out / "index.html").stat().st_mtime_ns
    with Generation(out) as gen:
        gen.write("feed.atom", b"two")
        gen.write("index.html", b"same")
        gen.commit()
    assert (out / "feed.atom").read_bytes() == b"two"
    assert int((out / "feed.atom").stat().st_mtime) == ahead + 1
    assert (out / "index.html").stat().st_mtime_ns == unchanged  # kept as it was
