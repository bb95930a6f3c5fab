"""Publish benchmark: digest against the I/O and stat floors measured in the same run.

    python bench/bench_publish.py [--sizes 1000,10000,100000] [--pelican]

For each N it writes a corpus in the sample format, then measures (each in a
fresh process, so interpreter start-up is reported apart):

- cold publish (empty state store and output),
- re-publish with nothing changed,
- re-publish with one file changed,

beside the floors: the I/O floor (read every article, then write as many
files and bytes as the cold publish wrote) and the stat floor (one stat per
article). Ratios are digest's time divided by the floor. With --pelican and
Pelican installed (`pip install -e '.[bench]'`), Pelican builds the same
articles (as Markdown) side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from corpus import write_corpus  # noqa: E402


def publish_once(base: Path, repeat: int = 1) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, str(HERE / "_publish_once.py"), str(base), str(repeat)],
                         env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def io_floor(articles: Path, files: int, nbytes: int, scratch: Path) -> float:
    paths = [entry.path for entry in os.scandir(articles)]
    per_file = max(1, nbytes // max(files, 1))
    payload = b"x" * per_file
    start = time.perf_counter()
    for path in paths:
        with open(path, "rb") as handle:
            handle.read()
    scratch.mkdir()
    for n in range(files):
        with open(scratch / f"{n}.html", "wb") as handle:
            handle.write(payload)
    elapsed = time.perf_counter() - start
    shutil.rmtree(scratch)
    return elapsed


def stat_floor(articles: Path) -> float:
    paths = [entry.path for entry in os.scandir(articles)]
    start = time.perf_counter()
    for path in paths:
        os.stat(path)
    return time.perf_counter() - start


def startup_seconds() -> float:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import digest.cli.main"], env=env, check=True)
    return time.perf_counter() - start


def pelican_seconds(base: Path, articles: Path) -> float | None:
    if shutil.which("pelican") is None:
        return None
    content = base / "pelican-content"
    content.mkdir()
    for path in sorted(articles.iterdir()):
        text = path.read_text()
        _head, _, body = text.partition(" ")  # "date"
        day, _, rest = body.partition(" ")
        title = rest.split(".")[0][:80]
        (content / (path.stem + ".md")).write_text(f"Title: {title}\nDate: {day}\n\n{rest}")
    start = time.perf_counter()
    subprocess.run(["pelican", str(content), "-o", str(base / "pelican-out"), "-q"],
                   check=True, cwd=base)
    return time.perf_counter() - start


@dataclass(frozen=True)
class Result:
    n: int
    cold: float
    io_floor: float
    nothing: float  # steady state: a later publish in the same process
    nothing_first: float  # the first publish of a fresh process
    stat_floor: float
    one: float
    main_mb: float
    reader_mb: float
    files: int
    mb_out: float
    pelican: float | None


def run(size: int, with_pelican: bool) -> Result:
    with tempfile.TemporaryDirectory(prefix=f"digest-bench-{size}-") as tmp:
        base = Path(tmp)
        articles = base / "articles"
        write_corpus(articles, size)
        cold = publish_once(base)
        floor_io = min(io_floor(articles, int(cold["files_written"]), int(cold["bytes_written"]),
                                base / f"scratch{i}") for i in range(3))
        warm = publish_once(base, repeat=4)
        assert warm["nothing_changed"], warm
        floor_stat = min(stat_floor(articles) for _ in range(5))
        victim = sorted(articles.iterdir())[size // 2]
        victim.write_text(victim.read_text() + "\nOne more paragraph, edited.\n")
        one = publish_once(base)
        return Result(
            n=size, cold=cold["seconds"], io_floor=floor_io, nothing=warm["steady_seconds"],
            nothing_first=warm["seconds"], stat_floor=floor_stat, one=one["seconds"],
            main_mb=max(cold["main_rss_mb"], one["main_rss_mb"]),
            reader_mb=cold["reader_rss_mb"], files=int(cold["files_written"]),
            mb_out=cold["bytes_written"] / 1e6,
            pelican=pelican_seconds(base, articles) if with_pelican else None,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--pelican", action="store_true", help="also time Pelican if installed")
    args = parser.parse_args()
    start = startup_seconds()
    print(f"start-up (python -c 'import digest.cli.main'): {start:.3f} s, reported apart\n")
    header = (f"{'N':>7} | {'cold s':>7} {'I/O floor':>9} {'ratio':>6} | {'unchanged s':>11} "
              f"{'(1st run)':>9} {'stat floor':>10} {'ratio':>6} | {'1 changed s':>11} | "
              f"{'main MB':>7} {'reader MB':>9} | {'files':>6} {'MB out':>6} | pelican")
    print(header)
    print("-" * len(header))
    for size in (int(s) for s in args.sizes.split(",")):
        r = run(size, args.pelican)
        pelican = "not run" if r.pelican is None else \
            f"{r.pelican:.1f} s (digest {r.pelican / r.cold:.1f}x faster)"
        print(f"{r.n:>7} | {r.cold:>7.2f} {r.io_floor:>9.3f} {r.cold / r.io_floor:>5.1f}x | "
              f"{r.nothing:>11.4f} {r.nothing_first:>9.4f} {r.stat_floor:>10.4f} "
              f"{r.nothing / r.stat_floor:>5.1f}x | {r.one:>11.3f} | {r.main_mb:>7.0f} "
              f"{r.reader_mb:>9.0f} | {r.files:>6} {r.mb_out:>6.1f} | {pelican}", flush=True)


if __name__ == "__main__":
    main()
