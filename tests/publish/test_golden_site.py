"""Golden files: the feeds and pages built from the repository's sample articles.

A change to any output shows up as a diff here. After an intended change,
regenerate with ``DIGEST_REGEN_GOLDEN=1 python -m pytest tests/test_golden_site.py``
and review the diff of tests/golden/site/.
"""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from digest.publish.build import publish
from digest.store.database import Store
from tests.conftest import REPO, make_settings

GOLDEN = REPO / "tests" / "golden" / "site"
REGEN = os.environ.get("DIGEST_REGEN_GOLDEN") == "1"
FILES = ("feed.atom", "feed.rss", "feed.json", "index.html", "feed.html", "sitemap.xml", "robots.txt",
         "articles/000_b4d3f6eb2287ccfb.html", "articles/front-matter-keys.html",
         "tags/index.html", "tags/reference.html", "tags/reference.atom", "tags/reference.json")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("golden")
    shutil.copytree(REPO / "articles", base / "articles")
    # SUBSCRIBE_FORM: the index shows the sign-up form.
    settings = make_settings(base, BASE_URL="https://example.org/news/", SUBSCRIBE_FORM="on")
    store = Store.open(settings.database_url, base)
    try:
        publish(settings, store, datetime(2026, 1, 15, 12, 0, tzinfo=UTC))
    finally:
        store.close()
    return settings.output_dir


@pytest.mark.parametrize("name", FILES)
def test_output_matches_golden_file(built: Path, name: str) -> None:
    actual = (built / name).read_bytes()
    golden = GOLDEN / name
    if REGEN:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_bytes(actual)
    if not golden.exists():
        pytest.fail(f"{golden} is missing; run with DIGEST_REGEN_GOLDEN=1 to create it")
    assert actual.decode() == golden.read_text(encoding="utf-8")
