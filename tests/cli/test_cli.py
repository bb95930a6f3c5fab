"""The CLI as a user runs it: subprocesses, exit codes, messages without tracebacks."""

from __future__ import annotations

import os
import pty
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from digest.settings import ENV_NAMES
from tests.conftest import REPO, base_env, copy_sample, digest_cli, write


def test_publish_sample_articles_like_the_readme(tmp_path: Path) -> None:
    shutil.copytree(REPO / "articles", tmp_path / "articles")
    shutil.copy(REPO / ".env.example", tmp_path / ".env")
    result = digest_cli("publish", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "published 4 articles: 4 new, 0 updated, 1 draft -> public/" in result.stdout
    assert (tmp_path / "public" / "feed.atom").is_file()
    again = digest_cli("publish", cwd=tmp_path)
    assert "nothing changed" in again.stdout


def test_problems_exit_3_with_one_line_each_and_no_traceback(site: Path) -> None:
    copy_sample(site)
    write(site / "articles" / "broken.txt", b"\xc3\x28 not UTF-8")
    result = digest_cli("publish", cwd=site)
    assert result.returncode == 3
    assert "problem: broken.txt: invalid UTF-8" in result.stderr
    assert "Traceback" not in result.stderr
    assert "published 1 article:" in result.stdout


def test_check_reports_everything_and_writes_nothing(site: Path) -> None:
    copy_sample(site)
    write(site / "articles" / "nodate.txt", "Hello.\n")
    write(site / "articles" / "empty.md", "")
    result = digest_cli("check", cwd=site)
    assert result.returncode == 3
    assert "nodate.txt" in result.stderr and "empty.md" in result.stderr
    assert "2 problems" in result.stdout
    assert sorted(p.name for p in site.iterdir()) == ["articles"]
    (site / "articles" / "nodate.txt").unlink()
    (site / "articles" / "empty.md").unlink()
    assert digest_cli("check", cwd=site).returncode == 0


def test_bad_setting_names_the_setting_and_the_form(site: Path) -> None:
    write(site / ".env", "FEED_MAX_ITEMS=lots\n")
    result = digest_cli("publish", cwd=site)
    assert result.returncode == 2
    assert "FEED_MAX_ITEMS='lots' is not a whole number" in result.stderr
    assert "hint:" in result.stderr and "Traceback" not in result.stderr


def test_environment_overrides_dotenv(site: Path) -> None:
    copy_sample(site)
    write(site / ".env", "SITE_TITLE=From dotenv\nBASE_URL=https://a.example/\n")
    digest_cli("publish", cwd=site, env={"SITE_TITLE": "From environment"})
    feed = (site / "public" / "feed.atom").read_text()
    assert "<title>From environment</title>" in feed
    assert "https://a.example/feed.atom" in feed


def test_debug_shows_the_traceback(site: Path) -> None:
    result = digest_cli("--debug", "publish", cwd=site, env={"BASE_URL": "not a url"})
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "ConfigError" in result.stderr


def test_global_options_work_after_the_command_too(site: Path) -> None:
    copy_sample(site)
    quiet = digest_cli("publish", "-q", cwd=site)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout == ""
    debug = digest_cli("publish", "--debug", cwd=site, env={"BASE_URL": "not a url"})
    assert "Traceback" in debug.stderr and "ConfigError" in debug.stderr
    env_file = site / "other.env"
    env_file.write_text("BASE_URL=not a url\n")
    chosen = digest_cli("check", "--env-file", str(env_file), cwd=site)
    assert chosen.returncode == 2 and "BASE_URL" in chosen.stderr
    # After `--`, nothing is taken for a global option.
    literal = digest_cli("subscribers", "add", "--", "-q", cwd=site)
    assert literal.returncode != 0 and "-q" in literal.stderr


def test_unreachable_database_is_a_clear_error(site: Path) -> None:
    result = digest_cli("publish", cwd=site,
                        env={"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"})
    assert result.returncode == 1
    assert "cannot open the state store postgresql" in result.stderr
    assert "check DATABASE_URL" in result.stderr


def test_password_in_database_url_is_not_printed(site: Path) -> None:
    result = digest_cli("publish", cwd=site,
                        env={"DATABASE_URL": "postgresql://user:hunter2secret@127.0.0.1:1/x"})
    assert result.returncode == 1
    assert "hunter2secret" not in result.stderr + result.stdout


@pytest.mark.parametrize(("line", "name"), [
    ("SITE_TITLE=", "SITE_TITLE"),  # was a feedgen ValueError traceback from publish
    ('SITE_TITLE="   "', "SITE_TITLE"),
    ("SMTP_HOST=", "SMTP_HOST"),  # was 'cannot connect to :25', called temporary
    ("SERVE_HOST=", "SERVE_HOST"),  # `digest serve` listened on every interface
])
def test_empty_setting_that_needs_a_value_is_refused(site: Path, line: str, name: str) -> None:
    copy_sample(site)
    write(site / ".env", line + "\n")
    result = digest_cli("publish", cwd=site)
    assert result.returncode == 2, result.stderr
    assert f"error: {name} is empty" in result.stderr
    assert "or remove the line for the default" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (site / "public").exists()


@pytest.mark.parametrize(("line", "default"), [
    ("FEED_MAX_ITEMS=", "50"), ("PUBLISH_INTERVAL=", "5m"), ("SMTP_SECURITY=", "starttls"),
])
def test_an_empty_line_says_how_to_get_the_default(site: Path, line: str, default: str) -> None:
    """`NAME=` is an empty value, not the default: the error says to remove the line."""
    copy_sample(site)
    write(site / ".env", line + "\n")
    result = digest_cli("publish", cwd=site)
    assert result.returncode == 2, result.stderr
    name = line.rstrip("=")
    assert f"error: {name}=" in result.stderr or f"error: {name} " in result.stderr
    assert f"or remove the line for the default, {default}" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_refuses_an_empty_host(site: Path) -> None:
    # (it listened on every interface, until stopped)
    result = digest_cli("serve", "--host", "", "--port", "0", cwd=site, timeout=20,
                        env={"SECRET_KEY": "test-secret-key-0123456789"})
    assert result.returncode == 2
    assert "Invalid value for '--host': empty" in result.stderr


def test_history_limit_is_at_least_one_and_not_with_an_edition(site: Path) -> None:
    env = base_env(site)
    copy_sample(site)
    assert digest_cli("publish", cwd=site, env=env).returncode == 0
    sent = digest_cli("send", cwd=site, env=env)  # no subscribers: an edition, no mail
    assert sent.returncode == 0, sent.stderr
    assert "edition 1" in sent.stdout
    for limit in ("0", "-1"):  # 0 said "no editions yet"; -1 listed all of them
        result = digest_cli("history", "--limit", limit, cwd=site, env=env)
        assert result.returncode == 2
        assert f"Invalid value for '--limit': {limit} is not in the range x>=1" in result.stderr
        assert result.stdout == ""
    both = digest_cli("history", "1", "--limit", "5", cwd=site, env=env)  # --limit was ignored
    assert both.returncode == 2
    assert "use either EDITION" in both.stderr and "or --limit" in both.stderr
    assert digest_cli("history", "--limit", "1", cwd=site, env=env).returncode == 0
    assert digest_cli("history", "1", cwd=site, env=env).returncode == 0


def test_misspelt_setting_in_dotenv_is_named_not_silently_ignored(site: Path) -> None:
    copy_sample(site)
    write(site / ".env", "SMTP_PASWORD=hunter2secret\nsite_title=Mine\n"
                         "POSTGRES_PASSWORD=for-another-program\nSITE_TITLE=Ours\n")
    result = digest_cli("publish", cwd=site)
    assert result.returncode == 0, result.stderr
    assert ("warning: .env: SMTP_PASWORD is not a setting and is ignored; did you mean "
            "SMTP_PASSWORD?") in result.stderr
    assert "warning: .env: site_title is not a setting and is ignored; did you mean " \
           "SITE_TITLE?" in result.stderr
    assert "POSTGRES_PASSWORD" not in result.stderr  # far from every setting: not ours
    assert "hunter2secret" not in result.stderr + result.stdout
    assert result.stderr.count("warning:") == 2


def test_quiet_leaves_only_the_data(site: Path) -> None:
    """-q ('print only errors') silenced the counts on stdout but not those on stderr."""
    env = base_env(site)
    copy_sample(site)
    assert digest_cli("publish", cwd=site, env=env).returncode == 0
    assert digest_cli("send", cwd=site, env=env).returncode == 0  # edition 1, to nobody
    assert digest_cli("subscribers", "add", "ann@example.org", cwd=site, env=env).returncode == 0
    for command in (["subscribers", "list"], ["subscribers", "export"], ["history", "1"],
                    ["send", "--dry-run", "--force"]):
        loud = digest_cli(*command, cwd=site, env=env)
        quiet = digest_cli("-q", *command, cwd=site, env=env)
        assert loud.returncode == quiet.returncode == 0, quiet.stderr
        assert loud.stderr != ""
        assert quiet.stderr == "", command
        if command[0] == "send":  # the message itself; its Message-ID is new each time
            assert quiet.stdout.startswith("From: Example News") and loud.stdout
        else:
            assert quiet.stdout == loud.stdout


def test_progress_bar_on_large_folders(site: Path) -> None:
    for n in range(600):
        write(site / "articles" / f"a{n:04d}.txt", f"date 2024-01-01 Article {n}. Body.\n")
    # A progress bar is drawn only on a terminal: give the command one.
    leader, follower = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
    env["PYTHONPATH"] = str(REPO)
    process = subprocess.run([sys.executable, "-m", "digest", "publish"], cwd=site, env=env,
                             stdout=subprocess.PIPE, stderr=follower, text=True, timeout=120,
                             check=False)
    os.close(follower)
    screen = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        screen += chunk
    os.close(leader)
    assert process.returncode == 0
    assert b"reading" in screen and b"100%" in screen
    assert "published 600 articles" in process.stdout


@pytest.mark.parametrize("command", [[], ["publish"], ["check"]])
def test_help(command: list[str], tmp_path: Path) -> None:
    result = digest_cli(*command, "--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "Usage:" in result.stdout
