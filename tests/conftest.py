"""The one fixture stack of the tests.

Here: a clean environment for every test, project folders, settings
(:func:`make_settings`), state stores on SQLite and PostgreSQL (one strategy: a
fresh schema per test), polling (:func:`wait_for`) and the CLI as a user runs it.
The SMTP server and TLS fixtures live beside the server code in
``tests/fixtures_mail.py``, registered below as a plugin: test modules import
helpers, never fixtures.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import pytest
import sqlalchemy as sa

from digest.settings import ENV_NAMES, Settings, load_settings
from digest.store.database import Store

pytest_plugins = ["tests.fixtures_mail", "tests.fixtures_imap"]

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "articles" / "000_b4d3f6eb2287ccfb.txt"
POSTGRES_URL = os.environ.get("DIGEST_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No setting of the developer's shell leaks into a test."""
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A project folder with an empty articles/ folder."""
    (tmp_path / "articles").mkdir()
    return tmp_path


# -- settings ----------------------------------------------------------------------------


def base_env(base: Path) -> dict[str, str]:
    """The settings of a test project that publishes and mails (SMTP on a closed port)."""
    return {
        "BASE_URL": "https://news.example.org/",
        "SITE_TITLE": "Example News",
        "DIGEST_FROM": "Example News <news@example.org>",
        "SECRET_KEY": "test-secret-key-0123456789",
        "TEMPLATES_DIR": str(base / "templates"),
        "SMTP_HOST": "127.0.0.1",
        "SMTP_SECURITY": "none",
        "SMTP_PORT": "2525",
    }


def make_settings(base: Path, **values: str) -> Settings:
    """Settings of a test project in `base`: :func:`base_env` and a SQLite state store
    (state.sqlite3), then `values`."""
    return load_settings({**base_env(base), "DATABASE_URL": "sqlite:///state.sqlite3", **values},
                         base)


# -- waiting -----------------------------------------------------------------------------


def missing(reason: str, consequence: str) -> NoReturn:
    """A program or server a test needs is missing: skip with a notice, or fail in CI.

    .ci/run installs everything the tests use, so there a missing part is a failure.
    """
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI requires it")
    pytest.skip(f"{reason}: {consequence}")


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """Stop a server a test started: terminate, then kill if it lingers; close its stderr."""
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if process.stderr is not None:
        process.stderr.close()


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    """Poll `condition` until it holds; fail the test after `timeout` seconds.

    Tests wait for what they can observe (a file, a log line, a received message),
    never for a fixed time.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)


# -- state stores ------------------------------------------------------------------------


def _postgres_available() -> bool:
    try:
        engine = sa.create_engine(POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://"),
                                  connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
        return True
    except sa.exc.OperationalError:
        return False


_PG = _postgres_available()


@pytest.fixture(params=[pytest.param("sqlite", id="sqlite"),
                        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database on each backend: a SQLite file, or a PostgreSQL schema.

    PostgreSQL is DIGEST_TEST_POSTGRES (default: the local server); without it the
    PostgreSQL half is skipped with a notice, except in CI, where it fails.
    """
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.sqlite3'}"
        return
    if not _PG:
        missing(f"PostgreSQL is not reachable at {POSTGRES_URL}", "ran on SQLite only")
    schema = "t_" + uuid.uuid4().hex[:12]
    admin = sa.create_engine(POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://"))
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql("SET lock_timeout = '30s'")  # a leaked session: an error, not a hang
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


@pytest.fixture
def store(database_url: str, tmp_path: Path) -> Iterator[Store]:
    """A migrated, empty state store, on SQLite and on PostgreSQL."""
    opened = Store.open(database_url, tmp_path)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    opened = Store.open(f"sqlite:///{tmp_path / 'state.sqlite3'}", tmp_path)
    try:
        yield opened
    finally:
        opened.close()


# -- files and the CLI -------------------------------------------------------------------


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def copy_sample(site: Path, name: str = "000_b4d3f6eb2287ccfb.txt") -> Path:
    return Path(shutil.copy(SAMPLE, site / "articles" / name))


def cli_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a `python -m digest` process: this checkout, no stray settings."""
    full_env = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
    full_env["PYTHONPATH"] = str(REPO) + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env.update(env or {})
    return full_env


def digest_cli(*args: str, cwd: Path, env: dict[str, str] | None = None,
               timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run `python -m digest ...` as a user would, in its own process."""
    return subprocess.run([sys.executable, "-m", "digest", *args], cwd=cwd, env=cli_env(env),
                          capture_output=True, text=True, timeout=timeout, check=False)
