"""A failed publish leaves nothing behind that breaks the next one; the closing summary
counts what readers see change; file names are printed escaped."""

from __future__ import annotations

import signal
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from digest.errors import shown_path
from tests.conftest import digest_cli, write
from tests.schedule_process import DigestRun

RUN_ENV = {"BASE_URL": "https://example.org/news/", "SITE_TITLE": "Example News",
           "DATABASE_URL": "sqlite:///state.sqlite3", "PUBLISH_INTERVAL": "1s",
           "DIGEST_SCHEDULE": "0 0 1 1 *", "TEMPLATES_DIR": "templates"}
CLI_ENV = {"BASE_URL": "https://example.org/news/", "SITE_TITLE": "Example News",
           "DATABASE_URL": "sqlite:///state.sqlite3"}


def article(site: Path, name: str, lead: str, *headers: str) -> Path:
    if name.endswith(".md"):
        front = "\n".join(("date: 2024-03-01", *headers))
        return write(site / "articles" / name, f"---\n{front}\n---\n{lead}\n")
    return write(site / "articles" / name, f"date 2024-03-01 {lead}\n")


def test_run_publishes_again_after_a_publish_that_failed_half_way(site: Path) -> None:
    # The front page template raises: the article pages are already placed in the new
    # generation when the publish fails, and the generation is removed.
    for n in range(3):
        article(site, f"sub/a{n}.txt", f"Resilient article number {n} is here.")
    broken = write(site / "templates" / "index.html", "{{ 1 // 0 }}\n")
    run = DigestRun(site, RUN_ENV)
    try:
        run.wait_for(lambda: run.output().count("publish failed") >= 2, "two failed publishes", 30)
        assert not (site / "public").exists()
        broken.unlink()  # fixed: the next publish must succeed in this same process
        index = site / "public" / "index.html"
        run.wait_for(lambda: index.is_file() and "number 2" in index.read_text(),
                     "the front page after the template was fixed", 20)
        assert (site / "public" / "articles" / "sub" / "a0.html").is_file()
        assert run.stop(signal.SIGTERM) == 0
    finally:
        run.close()
    output = run.output()
    assert "index.html, line 1: ZeroDivisionError" in output
    assert "No such file or directory" not in output
    assert "publish: 3 articles: 3 new, 0 updated, 0 removed" in output
    assert "Traceback" not in output


def test_publish_counts_what_readers_see_change(site: Path) -> None:
    for n in range(1, 13):
        article(site, f"a{n:02d}.md", f"Counted article number {n} is here.")
    # Same page as a01.md: refused, so neither shown nor counted as new.
    article(site, "a01.txt", "A clash with the first article.")
    first = digest_cli("publish", cwd=site, env=CLI_ENV)
    assert first.returncode == 3, first.stderr
    assert "published 12 articles: 12 new, 0 updated -> public/" in first.stdout
    assert "a01.txt: would have the same page as a01.md" in first.stderr

    article(site, "a02.md", "Counted article number 2, now edited.")  # updated
    (site / "articles" / "a03.md").unlink()  # removed
    article(site, "a04.md", "Counted article number 4 is here.", "draft: true")  # hidden
    article(site, "a13.md", "A newcomer is here.")  # new
    second = digest_cli("publish", cwd=site, env=CLI_ENV)
    assert "published 11 articles: 1 new, 1 updated, 2 removed, 1 draft -> public/" \
        in second.stdout, second.stdout

    (site / "articles" / "a01.md").unlink()  # the clashing a01.txt takes its place
    third = digest_cli("publish", cwd=site, env=CLI_ENV)
    assert third.returncode == 0, third.stderr
    assert "published 11 articles: 1 new, 0 updated, 1 removed, 1 draft" in third.stdout

    article(site, "a04.md", "Counted article number 4 is here.")  # the draft comes back
    fourth = digest_cli("publish", cwd=site, env=CLI_ENV)
    assert "published 12 articles: 1 new, 0 updated -> public/" in fourth.stdout


def test_file_names_with_control_characters_are_printed_escaped(site: Path) -> None:
    article(site, "a\nb.md", "A name with a newline.")
    write(site / "articles" / "c\x1b[31m.txt", "no date here\n")
    article(site, "plain.md", "A plain article.")
    for command in ("check", "publish"):
        result = digest_cli(command, cwd=site, env=CLI_ENV)
        assert result.returncode == 3, result.stderr
        lines = result.stderr.splitlines()
        assert any(line.startswith("problem: a\\nb.md: slug 'a\\nb' ")
                   for line in lines), result.stderr
        assert any(line.startswith("problem: c\\x1b[31m.txt: ") for line in lines), result.stderr
        assert "\x1b" not in result.stderr + result.stdout
        assert not any(line.startswith("b.md") for line in lines)


def test_an_escaped_file_name_in_the_summary_of_the_output_folder(site: Path) -> None:
    article(site, "plain.md", "A plain article.")
    result = digest_cli("publish", cwd=site, env=dict(CLI_ENV, OUTPUT_DIR="out\nput"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("-> out\\nput/")


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(exclude_categories=())), st.text())
def test_shown_path_is_one_printable_line_and_tells_names_apart(a: str, b: str) -> None:
    shown = shown_path(a)
    assert all(char.isprintable() or char == " " for char in shown)
    assert "\n" not in shown and "\r" not in shown
    if a != b:
        assert shown != shown_path(b)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=12), st.binary(max_size=12))
def test_shown_path_tells_apart_names_that_are_not_utf8(a: bytes, b: bytes) -> None:
    shown = shown_path(a.decode("utf-8", "surrogateescape"))  # as os.listdir gives them
    assert all(char.isprintable() or char == " " for char in shown)
    if a != b:
        assert shown != shown_path(b.decode("utf-8", "surrogateescape"))
