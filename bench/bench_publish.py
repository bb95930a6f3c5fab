"""Publish benchmark: digest against the I/O and stat floors measured in the same run.

    python bench/bench_publish.py [--sizes 1000,10000,100000] [--pelican] [--rounds 3]

For each N it writes a corpus like a real site's (bench/corpus.py: tags on
every article, a picture beside every tenth), then measures (each in a fresh
process, so interpreter start-up is reported apart):

- cold publish (empty state store and output),
- re-publish with nothing changed,
- re-publish with one file changed,

beside the floors: the I/O floor (read every article, then write as many
files and bytes as the cold publish wrote) and the stat floor (one stat per
article). Ratios are digest's time divided by the floor. The cold publish is
measured --rounds times. Each round's I/O floor is taken in the publish's own
moment, because the disk of a shared virtual machine swings (creating the same
12,000 files costs 0.3 s in one minute and 4 s in another): twice right after
the publish, and twice after the same clean-up that came before it (output
removed, `sync`); the round's floor is the median of the four. Two ratios are
shown: the median round's, and the best against the best (the fastest publish
over the lowest floor seen in the run, the strict reading of "N times the
floor").

With --pelican and Pelican installed (`pip install -e '.[bench]'`), Pelican
builds the same articles (as Markdown, with the same tags and pictures) with
its tag feeds on (TAG_FEED_ATOM, TAG_FEED_RSS, as digest writes an Atom and a
JSON feed per tag), full content in feeds and FEED_MAX_ITEMS items, against
an I/O floor of its own output measured the same way around it; a second
table shows both side by side.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
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


def input_files(articles: Path) -> list[str]:
    return [os.path.join(folder, name) for folder, _, names in os.walk(articles) for name in names]


def io_floor(articles: Path, files: int, nbytes: int, scratch: Path) -> float:
    """Read every input file, then write `files` files of `nbytes` bytes in all."""
    paths = input_files(articles)
    per_file = max(1, nbytes // max(files, 1))
    payload = b"x" * per_file
    os.sync()  # not timed: what the build before left dirty must not slow the floor down
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


FLOOR_SAMPLES = 2  # floors in each of the two moments around a build


def floors_around(inputs: Path, files: int, nbytes: int, scratch: Path,
                  clean: Callable[[], None]) -> list[float]:
    """I/O floors in a build's own moment: FLOOR_SAMPLES right after it, then (after
    `clean`, the clean-up that came before the build) FLOOR_SAMPLES more. Scratch
    folders are named after `scratch`."""
    after = [io_floor(inputs, files, nbytes, scratch.with_name(f"{scratch.name}-after{i}"))
             for i in range(FLOOR_SAMPLES)]
    clean()
    return after + [io_floor(inputs, files, nbytes, scratch.with_name(f"{scratch.name}-clean{i}"))
                    for i in range(FLOOR_SAMPLES)]


def remove(*paths: Path) -> None:
    """Remove build output (file, symlink or folder), then flush what the removal dirtied:
    the clean-up before every timed build and floor."""
    for path in paths:
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.exists():
            shutil.rmtree(path)
    os.sync()


def output_size(folder: Path) -> tuple[int, int]:
    """(files, bytes) under folder."""
    sizes = [os.path.getsize(path) for path in input_files(folder)]
    return len(sizes), sum(sizes)


def stat_floor(articles: Path) -> float:
    paths = input_files(articles)
    start = time.perf_counter()
    for path in paths:
        os.stat(path)
    return time.perf_counter() - start


def startup_seconds() -> float:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import digest.cli.main"], env=env, check=True)
    return time.perf_counter() - start


PELICAN_CONF = """\
SITEURL = "https://bench.example"
SITENAME = "Bench"
AUTHOR = "Bench"
TIMEZONE = "UTC"
DEFAULT_LANG = "en"
STATIC_PATHS = ["images"]
FEED_MAX_ITEMS = {max_items}
DEFAULT_PAGINATION = {max_items}
RSS_FEED_SUMMARY_ONLY = False
FEED_ALL_ATOM = "feeds/all.atom.xml"
FEED_ALL_RSS = "feeds/all.rss.xml"
TAG_FEED_ATOM = "feeds/{{slug}}.tag.atom.xml"
TAG_FEED_RSS = "feeds/{{slug}}.tag.rss.xml"
"""
PELICAN_MAX_ITEMS = 50  # digest's FEED_MAX_ITEMS default


def pelican_content(articles: Path, content: Path) -> None:
    """The corpus as Pelican Markdown: the same text, tags, dates and pictures."""
    (content / "images").mkdir(parents=True)
    for path in sorted(articles.iterdir()):
        if path.is_dir():
            for image in path.iterdir():
                shutil.copyfile(image, content / "images" / image.name)
            continue
        text = path.read_text()
        if path.suffix == ".md":
            _, front, body = text.split("---\n", 2)
            fields = dict(line.split(": ", 1) for line in front.splitlines())
            day, tags = fields["date"], fields["tags"].strip("[]")
        else:
            head, _, rest = text.partition("\ndate ")
            tags = head.removeprefix("tags ")
            day, _, body = rest.partition(" ")
        title = body.split(".")[0][:80]
        (content / (path.stem + ".md")).write_text(
            f"Title: {title}\nDate: {day}\nTags: {tags}\n\n{body}")


@dataclass(frozen=True)
class Pelican:
    seconds: float
    floors: tuple[float, ...]  # around its build (floors_around)
    files: int
    mb_out: float

    @property
    def io_floor(self) -> float:
        return statistics.median(self.floors)

    @property
    def best_ratio(self) -> float:
        return self.seconds / min(self.floors)


def pelican_run(base: Path, articles: Path) -> Pelican | None:
    """Pelican's build of the same articles, and an I/O floor of what it wrote."""
    if importlib.util.find_spec("pelican") is None:
        return None
    content, out = base / "pelican-content", base / "pelican-out"
    pelican_content(articles, content)
    (base / "pelicanconf.py").write_text(PELICAN_CONF.format(max_items=PELICAN_MAX_ITEMS))
    remove(out)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pelican", str(content), "-o", str(out),
                    "-s", str(base / "pelicanconf.py"), "-q"], check=True, cwd=base,
                   capture_output=True)
    seconds = time.perf_counter() - start
    files, nbytes = output_size(out)
    floors = floors_around(content, files, nbytes, base / "pelican-scratch", lambda: remove(out))
    return Pelican(seconds, tuple(floors), files, nbytes / 1e6)


@dataclass(frozen=True)
class Result:
    n: int
    cold: float  # the median round's
    cpu: float  # its CPU seconds (user + system, with the reader processes)
    io_floor: float  # that round's floor (the median of those around its publish)
    ratios: tuple[float, ...]  # cold / floor of each round
    best_ratio: float  # the fastest cold publish over the lowest floor of all rounds
    floor_range: tuple[float, float]  # the lowest and highest floor measured
    nothing: float  # steady state: a later publish in the same process
    nothing_first: float  # the first publish of a fresh process
    stat_floor: float
    one: float
    main_mb: float
    reader_mb: float
    files: int
    mb_out: float
    pelican: Pelican | None

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios)


@dataclass(frozen=True)
class Round:
    seconds: float
    floors: tuple[float, ...]  # around this publish (floors_around)
    report: dict[str, float]

    @property
    def floor(self) -> float:
        return statistics.median(self.floors)

    @property
    def ratio(self) -> float:
        return self.seconds / self.floor


def cold_rounds(base: Path, articles: Path, rounds: int) -> list[Round]:
    """Each cold publish (from an empty store and output) with the I/O floors around it."""
    outputs = [base / name for name in ("public", ".public.generations", "state.sqlite3")]
    measured = []
    for _ in range(rounds):
        remove(*outputs)
        cold = publish_once(base)
        floors = floors_around(articles, int(cold["files_written"]), int(cold["bytes_written"]),
                               base / "scratch", lambda: remove(*outputs))
        measured.append(Round(cold["seconds"], tuple(floors), cold))
    return measured


def run(size: int, with_pelican: bool, rounds: int) -> Result:
    with tempfile.TemporaryDirectory(prefix=f"digest-bench-{size}-") as tmp:
        base = Path(tmp)
        articles = base / "articles"
        write_corpus(articles, size)
        measured = cold_rounds(base, articles, rounds)
        middle = sorted(measured, key=lambda m: m.ratio)[len(measured) // 2]
        cold = middle.report
        every_floor = [f for m in measured for f in m.floors]
        publish_once(base)  # untimed: the rounds' floors ended by removing the output
        warm = publish_once(base, repeat=4)
        assert warm["nothing_changed"], warm
        floor_stat = min(stat_floor(articles) for _ in range(5))
        victim = sorted(articles.glob("*.txt"))[size // 2]
        victim.write_text(victim.read_text() + "\nOne more paragraph, edited.\n")
        one = publish_once(base)
        return Result(
            n=size, cold=middle.seconds, cpu=cold["cpu_seconds"], io_floor=middle.floor,
            ratios=tuple(m.ratio for m in measured),
            best_ratio=min(m.seconds for m in measured) / min(every_floor),
            floor_range=(min(every_floor), max(every_floor)), nothing=warm["steady_seconds"],
            nothing_first=warm["seconds"], stat_floor=floor_stat, one=one["seconds"],
            main_mb=max(cold["main_rss_mb"], one["main_rss_mb"]),
            reader_mb=cold["reader_rss_mb"], files=int(cold["files_written"]),
            mb_out=cold["bytes_written"] / 1e6,
            pelican=pelican_run(base, articles) if with_pelican else None,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--pelican", action="store_true", help="also time Pelican if installed")
    parser.add_argument("--rounds", type=int, default=1,
                        help="cold publishes (each with its floors) per size; the median is shown")
    args = parser.parse_args()
    start = startup_seconds()
    print(f"start-up (python -c 'import digest.cli.main'): {start:.3f} s, reported apart; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} before the run\n")
    header = (f"{'N':>7} | {'cold s':>7} {'(CPU s)':>7} {'I/O floor':>9} {'ratio':>6} {'best':>6} | "
              f"{'unchanged s':>11} {'(1st run)':>9} {'stat floor':>10} {'ratio':>6} | "
              f"{'1 changed s':>11} | {'main MB':>7} {'reader MB':>9} | {'files':>6} {'MB out':>6} | "
              f"rounds' ratios (floors measured)")
    print(header)
    print("-" * len(header))
    results = []
    for size in (int(s) for s in args.sizes.split(",")):
        r = run(size, args.pelican, args.rounds)
        results.append(r)
        low, high = r.floor_range
        print(f"{r.n:>7} | {r.cold:>7.2f} {r.cpu:>7.2f} {r.io_floor:>9.3f} {r.ratio:>5.1f}x "
              f"{r.best_ratio:>5.1f}x | {r.nothing:>11.4f} {r.nothing_first:>9.4f} "
              f"{r.stat_floor:>10.4f} {r.nothing / r.stat_floor:>5.1f}x | {r.one:>11.3f} | "
              f"{r.main_mb:>7.0f} {r.reader_mb:>9.0f} | {r.files:>6} {r.mb_out:>6.1f} | "
              f"{' '.join(f'{x:.1f}x' for x in r.ratios)} ({low:.2f}-{high:.2f} s)", flush=True)
    print("\nratio: the median round's (cold / the median of the floors around it); best: the "
          "fastest cold publish / the lowest floor of the run")
    if args.pelican:
        side_by_side(results)


def side_by_side(results: list[Result]) -> None:
    """Cold builds of digest and Pelican, each against the I/O floor of its own output."""
    print("\ncold build, each against an I/O floor of its own output (read the input, "
          "write as many files and bytes)")
    header = (f"{'N':>7} | {'digest s':>8} {'floor s':>7} {'files':>6} {'MB':>5} {'ratio':>6} "
              f"{'best':>6} | {'pelican s':>9} {'floor s':>7} {'files':>6} {'MB':>5} {'ratio':>6} "
              f"{'best':>6} | pelican/digest")
    print(header)
    print("-" * len(header))
    for r in results:
        p = r.pelican
        pelican = "Pelican not installed (pip install -e '.[bench]')" if p is None else (
            f"{p.seconds:>9.2f} {p.io_floor:>7.3f} {p.files:>6} {p.mb_out:>5.0f} "
            f"{p.seconds / p.io_floor:>5.1f}x {p.best_ratio:>5.1f}x | {p.seconds / r.cold:.1f}x")
        print(f"{r.n:>7} | {r.cold:>8.2f} {r.io_floor:>7.3f} {r.files:>6} {r.mb_out:>5.0f} "
              f"{r.ratio:>5.1f}x {r.best_ratio:>5.1f}x | {pelican}", flush=True)


if __name__ == "__main__":
    main()
