"""Hostile article folders through the CLI: each bad file is refused by name, the rest publish.

`digest check` and `digest publish` must report the same problems, print no
traceback and never hang; the good articles are published whatever sits next
to them.
"""

from __future__ import annotations

import ctypes
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import feedparser
import pytest

from digest.errors import ArticleError
from digest.model import SourceFile
from digest.publish.reading import read_source
from digest.settings import ENV_NAMES
from tests.conftest import REPO, digest_cli, write

GOOD = "date 2024-01-02 A good article. It publishes whatever sits next to it.\n"


def cli(site: Path, *args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    result = digest_cli(*args, cwd=site, env={"BASE_URL": "https://example.org/news/", **env},
                        timeout=timeout)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def problems(result: subprocess.CompletedProcess[str]) -> list[str]:
    return sorted(line for line in result.stderr.splitlines() if line.startswith("problem: "))


def check_and_publish(site: Path, **env: str) -> tuple[list[str], subprocess.CompletedProcess[str]]:
    """Both commands; they must agree on the problems. Returns them and the publish result."""
    checked = cli(site, "check", **env)
    published = cli(site, "publish", **env)
    assert problems(checked) == problems(published)
    assert checked.returncode == published.returncode == (3 if problems(checked) else 0)
    return problems(published), published


def feed_links(site: Path) -> list[str]:
    parsed = feedparser.parse((site / "public" / "feed.atom").read_bytes())
    assert parsed.bozo == 0
    return sorted(entry.link for entry in parsed.entries)


def pages(site: Path) -> list[str]:
    root = site / "public" / "articles"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.html"))


def md(slug: str) -> str:
    return f'---\ndate: 2024-01-03\ntitle: T\nslug: "{slug}"\n---\nSome text.\n'


def test_unsafe_slugs_are_refused_per_article_by_one_check(site: Path) -> None:
    arts = site / "articles"
    write(arts / "good.txt", GOOD)
    bad = {"double.md": "a//b", "dot.md": "a/./b", "up.md": "a/../b", "lead.md": ".well-known/x",
           "inner.md": "a/.git", "accent.md": "café", "space.md": "a b", "ctrl.md": "a\\tb",
           "long.md": "x" * 201, "part.md": "a/" + "y" * 101}
    for name, slug in bad.items():
        write(arts / name, md(slug))
    write(arts / "my file.txt", GOOD)  # a slug made from the file name is checked the same way
    write(arts / "sub" / "ok.md", md("sub/v1.2_ok~x"))
    found, result = check_and_publish(site)
    for name in [*bad, "my file.txt"]:
        assert any(line.startswith(f"problem: {name}: slug ") for line in found), (name, found)
    assert any("(made from the file name)" in line for line in found if "my file.txt" in line)
    assert len(found) == len(bad) + 1
    assert pages(site) == ["good.html", "sub/v1.2_ok~x.html"]
    assert "published 2 articles" in result.stdout


def test_hidden_files_and_folders_are_passed_over(site: Path) -> None:
    arts = site / "articles"
    write(arts / "good.txt", GOOD)
    write(arts / ".draft.txt", GOOD)
    write(arts / ".drafts" / "later.md", md("later"))
    write(arts / "sub" / ".git" / "x.txt", GOOD)
    found, result = check_and_publish(site)
    assert found == [] and pages(site) == ["good.html"]
    assert "published 1 article:" in result.stdout


def test_file_and_folder_names_that_are_not_utf8_are_reported_escaped(site: Path) -> None:
    arts = bytes(site / "articles")
    write(site / "articles" / "good.txt", GOOD)
    for name, text in [(b"caf\xe9.txt", GOOD), (b"b\xff.md", md("explicit-slug")),
                       (b"dir\xfe/inside.txt", GOOD)]:
        path = os.path.join(arts, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
    found, result = check_and_publish(site)
    assert found == sorted(["problem: caf\\xe9.txt: file name is not valid UTF-8",
                            "problem: b\\xff.md: file name is not valid UTF-8",
                            "problem: dir\\xfe: folder name is not valid UTF-8"])
    assert "rename the file" in result.stderr and "rename the folder" in result.stderr
    assert pages(site) == ["good.html"]


def test_yaml_alias_bombs_and_deep_or_huge_front_matter_are_refused_quickly(site: Path) -> None:
    arts = site / "articles"
    write(arts / "good.txt", GOOD)
    levels = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 10):  # nine nested aliases: 9**10 items once expanded
        levels.append(f"{chr(97 + i)}: &{chr(97 + i)} [" + ", ".join([f"*{chr(96 + i)}"] * 9) + "]")
    write(arts / "bomb.md", "---\ndate: 2024-01-03\n" + "\n".join(levels) + "\n---\nText.\n")
    write(arts / "alias.md", "---\ndate: &d 2024-01-03\nupdated: *d\n---\nText.\n")
    write(arts / "deep.md", "---\ndate: 2024-01-03\nx: " + "[" * 3000 + "]" * 3000 + "\n---\nT.\n")
    write(arts / "value.md", "---\ndate: 2024-01-03\ntitle: " + "9" * 5000 + "\n---\nText.\n")
    write(arts / "block.md", "---\ndate: 2024-01-03\n" + "k: v\n" * 20000 + "---\nText.\n")
    start = time.monotonic()
    found, _ = check_and_publish(site)
    assert time.monotonic() - start < 30
    reasons = {line.split(":")[1].strip(): line for line in found}
    assert set(reasons) == {"bomb.md", "alias.md", "deep.md", "value.md", "block.md"}
    assert "anchor or alias" in reasons["bomb.md"] and "anchor or alias" in reasons["alias.md"]
    assert "more than 8 deep" in reasons["deep.md"]
    assert "over the limit of 4,000" in reasons["value.md"]
    assert "front matter is 100,017 characters long, over the limit of 65,536" in reasons["block.md"]
    assert pages(site) == ["good.html"]


def test_out_of_range_dates_are_refused_so_preview_keeps_working(site: Path) -> None:
    arts = site / "articles"
    write(arts / "good.txt", GOOD)
    write(arts / "edge.txt", "date 1900-01-01 Oldest date allowed.\n")
    write(arts / "year1.md", "---\ndate: 0001-01-01\n---\nVery old.\n")
    write(arts / "plain1.txt", "date 0001-01-01 Very old.\n")
    write(arts / "late.txt", "updated 9999-12-31T23:59:59-23:59\ndate 2024-01-01 Updated late.\n")
    tokyo = {"SITE_TIMEZONE": "Asia/Tokyo"}
    found, result = check_and_publish(site, **tokyo)
    assert found == sorted([
        "problem: year1.md: date 0001-01-01 is out of range",
        "problem: plain1.txt: date 0001-01-01 is out of range",
        "problem: late.txt: updated 9999-12-31T23:59:59-23:59 is out of range"])
    assert "published 2 articles" in result.stdout
    preview = cli(site, "preview", "--out", str(site / "preview.html"), **tokyo)
    assert preview.returncode == 0, preview.stderr
    assert "A good article" in (site / "preview.html").read_text()


def _without_file_permission_override() -> None:
    """Run the child without CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH, so root obeys chmod 000."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            os._exit(97)


def _publish_unprivileged(site: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
    env.update(PYTHONPATH=str(REPO), BASE_URL="https://example.org/news/")
    result = subprocess.run([sys.executable, "-m", "digest", "publish"], cwd=site, env=env,
                            capture_output=True, text=True, timeout=60, check=False,
                            preexec_fn=_without_file_permission_override if os.geteuid() == 0
                            else None)
    if result.returncode == 97:
        pytest.skip("running as root without the right to drop CAP_DAC_OVERRIDE: "
                    "chmod 000 can't make a folder unreadable here")
    assert "Traceback" not in result.stderr, result.stderr
    return result


def test_an_unreadable_folder_keeps_its_articles_last_good_versions(site: Path) -> None:
    arts = site / "articles"
    write(arts / "good.txt", GOOD)
    write(arts / "sub" / "kept.txt", "date 2024-01-03 Kept while unreadable. More.\n")
    write(arts / "sub" / "deeper" / "also.txt", "date 2024-01-04 Also kept. More.\n")
    assert _publish_unprivileged(site).returncode == 0
    before = feed_links(site)
    assert len(before) == 3
    (arts / "sub").chmod(0)
    try:
        result = _publish_unprivileged(site)
        assert result.returncode == 3
        assert problems(result) == ["problem: sub/: cannot list folder (Permission denied); "
                                    "the articles in it keep their last published versions"]
        assert "published 3 articles" in result.stdout and "removed" not in result.stdout
        assert feed_links(site) == before
        assert pages(site) == ["good.html", "sub/deeper/also.html", "sub/kept.html"]
        write(arts / "new.txt", "date 2024-01-05 A new one while sub is unreadable.\n")
        again = _publish_unprivileged(site)
        assert "published 4 articles: 1 new" in again.stdout
        assert len(feed_links(site)) == 4
    finally:
        (arts / "sub").chmod(0o755)
    healed = _publish_unprivileged(site)
    assert healed.returncode == 0 and "published 4 articles" in healed.stdout
    assert "removed" not in healed.stdout


def test_a_symlink_loop_is_reported_once_and_duplicates_nothing(site: Path) -> None:
    arts = site / "articles"
    write(arts / "good.txt", GOOD)
    write(arts / "sub" / "a.txt", "date 2024-01-03 In a folder. More.\n")
    (arts / "self").symlink_to(".")
    (arts / "sub" / "up").symlink_to("..")
    (arts / "sub" / "again").symlink_to(".")
    write(arts / ".drafts" / "shown.txt", "date 2024-01-04 Through a link. More.\n")
    (arts / "linked").symlink_to(".drafts")  # a link may still name a hidden folder's articles
    found, result = check_and_publish(site)
    assert found == [
        "problem: self: is a symlink to the articles folder itself, which is already read "
        "(a loop or a second path to the same articles); skipped",
        "problem: sub/again: is a symlink to sub/, which is already read "
        "(a loop or a second path to the same articles); skipped",
        "problem: sub/up: is a symlink to the articles folder itself, which is already read "
        "(a loop or a second path to the same articles); skipped",
    ]
    assert "published 3 articles" in result.stdout
    assert pages(site) == ["good.html", "linked/shown.html", "sub/a.html"]


def test_a_fifo_or_device_named_like_an_article_is_reported_and_never_blocks(site: Path) -> None:
    arts = site / "articles"
    write(arts / "good.txt", GOOD)
    os.mkfifo(arts / "x.md")
    (arts / "null.txt").symlink_to("/dev/null")  # outside: reported as such
    os.makedirs(arts / "sub" / ".pipes")
    os.mkfifo(arts / "sub" / ".pipes" / "fifo")  # hidden: passed over like any hidden file
    (arts / "sub" / "piped.md").symlink_to(".pipes/fifo")
    expected = ["problem: x.md: is a FIFO (named pipe), not a regular file",
                "problem: null.txt: is a symlink that leads outside the articles folder",
                "problem: sub/piped.md: is a FIFO (named pipe), not a regular file"]
    try:
        os.mknod(arts / "zero.md", 0o600 | stat.S_IFCHR, os.makedev(1, 5))
        expected.append("problem: zero.md: is a device, not a regular file")
    except PermissionError:
        pass  # not allowed to make device files here: the FIFOs stand for them
    found, _ = check_and_publish(site)
    assert found == sorted(expected)
    assert pages(site) == ["good.html"]


def test_a_file_replaced_by_a_fifo_after_the_scan_is_refused_without_blocking(
        tmp_path: Path) -> None:
    fifo = tmp_path / "x.md"
    os.mkfifo(fifo)
    start = time.monotonic()
    with pytest.raises(ArticleError, match=r"^x\.md: is a FIFO \(named pipe\), not a regular file$"):
        read_source(SourceFile("x.md", str(fifo), 10, 0), 1000)
    assert time.monotonic() - start < 5


def test_a_file_replaced_by_a_folder_after_the_scan_is_refused(tmp_path: Path) -> None:
    """(Opening it as a file object raised IsADirectoryError before the check was reached.)"""
    (tmp_path / "x.md").mkdir()
    with pytest.raises(ArticleError, match=r"^x\.md: is a folder, not a regular file$"):
        read_source(SourceFile("x.md", str(tmp_path / "x.md"), 10, 0), 1000)


@pytest.mark.parametrize("size", [0, 1, 999, 1000, 1001, 5000])
@pytest.mark.parametrize("seen", [0, 1, 0.5, 2])  # the size fstat gives, times the real one
def test_an_article_is_read_to_its_end_or_one_byte_over_the_limit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int, seen: float) -> None:
    """Reads are sized by the file's size as fstat gives it; a file that grew since is
    still read to its end (or one byte over the limit)."""
    (tmp_path / "x.md").write_bytes(b"a" * size)
    real_fstat = os.fstat

    def fstat(fd: int) -> os.stat_result:
        info = list(real_fstat(fd))
        info[6] = int(info[6] * seen)  # st_size
        return os.stat_result(info)

    monkeypatch.setattr(os, "fstat", fstat)
    data = read_source(SourceFile("x.md", str(tmp_path / "x.md"), size, 0), 1000)
    assert data == b"a" * min(size, 1001)
