"""Shared fixtures: clean environment, settings, stores on SQLite and PostgreSQL, the CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from digest.settings import ENV_NAMES, Settings, load_settings
from digest.store.database import Store

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


def make_settings(base: Path, **values: str) -> Settings:
    defaults = {"BASE_URL": "https://example.org/news/", "SITE_TITLE": "Example News",
                "DATABASE_URL": "sqlite:///state.sqlite3"}
    defaults.update(values)
    return load_settings(defaults, base)


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


@dataclass(frozen=True)
class Backend:
    name: str
    url: str


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database on each backend: a SQLite file, or a PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.sqlite3'}"
        return
    if not _PG:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_URL}; CI requires it")
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_URL}: store tests ran on SQLite only")
    schema = "t_" + uuid.uuid4().hex[:12]
    admin = sa.create_engine(POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://"))
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


@pytest.fixture
def store(database_url: str, tmp_path: Path) -> Iterator[Store]:
    opened = Store.open(database_url, tmp_path)
    try:
        yield opened
    finally:
        opened.close()


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def copy_sample(site: Path, name: str = "000_b4d3f6eb2287ccfb.txt") -> Path:
    return Path(shutil.copy(SAMPLE, site / "articles" / name))


def digest_cli(*args: str, cwd: Path, env: dict[str, str] | None = None,
               timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run `python -m digest ...` as a user would, in its own process."""
    full_env = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
    full_env["PYTHONPATH"] = str(REPO) + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "digest", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout, check=False)
