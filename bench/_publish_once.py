"""Run one publish in this process and print its timing and peak memory as JSON.

Used by bench_publish.py so that interpreter start-up is measured apart. digest is
imported in main(), not at the top: reader processes are spawned and import the main
module again, and (as with the `digest` command, whose module imports lazily) they
should load only what reading needs.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from datetime import UTC, datetime
from pathlib import Path


def _cpu() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    start_import = time.perf_counter()
    from digest.publish.build import publish
    from digest.settings import load_settings
    from digest.store.database import Store

    imported = time.perf_counter() - start_import
    base = Path(sys.argv[1])
    settings = load_settings({"BASE_URL": "https://bench.example/", "DATABASE_URL": "sqlite:///state.sqlite3"},
                             base)
    store = Store.open(settings.database_url, base)
    repeat = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    start, cpu_start = time.perf_counter(), _cpu()
    report = publish(settings, store, datetime(2026, 1, 1, tzinfo=UTC))
    elapsed, cpu = time.perf_counter() - start, _cpu() - cpu_start
    # Later runs in the same process: the steady state of `digest run`, which publishes
    # every PUBLISH_INTERVAL from one long-lived process.
    again = []
    for _ in range(repeat - 1):
        begin = time.perf_counter()
        publish(settings, store, datetime(2026, 1, 1, tzinfo=UTC))
        again.append(time.perf_counter() - begin)
    store.close()
    print(json.dumps({
        "seconds": elapsed,
        "cpu_seconds": cpu,  # user + system, this process and its reader processes
        "steady_seconds": min(again) if again else elapsed,
        "import_seconds": imported,
        # This process plus the largest reader process (their peaks may not coincide).
        "peak_rss_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                        + resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024,
        "main_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "reader_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "files_written": report.files_written,
        "files_kept": report.files_kept,
        "bytes_written": report.bytes_written,
        "published": report.published,
        "nothing_changed": report.nothing_changed,
    }))


if __name__ == "__main__":
    main()
