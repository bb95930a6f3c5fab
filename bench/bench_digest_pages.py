"""Benchmark: putting a new edition's web copy online beside a big site.

    python bench/bench_digest_pages.py [--files 30000] [--editions 200]

What `digest send` does before its first message: render every edition's page
and the index, carry the rest of the current output over into a new generation
(hard links) and swap it in. Measured against a floor taken in the same run:
hard-linking the same number of files into a fresh folder and one os.sync()
(what the carry-over and the commit cannot avoid). Also reported: the same
call for a resumed edition whose pages are already online (nothing written).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from digest.mail.outbox import Outbox
from digest.publish.output import Generation, current_generation
from digest.publish.web_copy import publish_digest_pages
from digest.settings import load_settings
from digest.store.database import Store
from tests.fixtures_mail import add_articles, sample_articles

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=30_000)
    parser.add_argument("--editions", type=int, default=200)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-digest-pages-"))
    settings = load_settings({"BASE_URL": "https://example.org/", "DATABASE_URL":
                              "sqlite:///state.sqlite3", "DIGEST_FROM": "news@example.org"}, base)
    with Generation(settings.output_dir) as gen:
        for i in range(args.files):
            gen.write(f"articles/{i // 1000}/a{i}.html", b"<p>An article page.</p>" * 40)
        gen.commit()
    store = Store.open(settings.database_url, base)
    outbox = Outbox(store)
    articles = sample_articles(args.editions)
    for number, article in enumerate(articles):
        add_articles(store, article)
        edition, _ = outbox.open_or_create(store.load_articles().values(),
                                           NOW + timedelta(hours=number),
                                           message_id=lambda uid, a: f"<{uid}.{a}>")
        assert edition is not None
        outbox.finish(edition.id, NOW)

    started = time.perf_counter()
    assert publish_digest_pages(settings, store)
    online = time.perf_counter() - started
    started = time.perf_counter()
    assert not publish_digest_pages(settings, store)
    resumed = time.perf_counter() - started

    current = current_generation(settings.output_dir)
    assert current is not None
    floor_dir = base / "floor"
    started = time.perf_counter()
    for folder, _, files in os.walk(current):
        target = floor_dir / os.path.relpath(folder, current)
        target.mkdir(parents=True, exist_ok=True)
        for name in files:
            os.link(os.path.join(folder, name), target / name)
    os.sync()
    floor = time.perf_counter() - started
    store.close()
    print(f"{args.files} files, {args.editions} editions")
    print(f"floor (hard-link every file, sync): {floor:.3f} s")
    print(f"new edition's pages online:         {online:.3f} s  ({online / floor:.2f}x the floor)")
    print(f"resumed edition, already online:    {resumed:.3f} s")


if __name__ == "__main__":
    main()
