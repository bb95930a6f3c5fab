"""Write N articles in the plain-text sample format, for benchmarks.

    python bench/corpus.py OUT_DIR N

Articles look like the real sample (a date line with the lead, section
headings, three to five paragraphs, about 2.5 kB) and are reproducible: the
same N gives the same files.
"""

from __future__ import annotations

import random
import sys
from datetime import date, timedelta
from pathlib import Path

SAMPLE = Path(__file__).resolve().parent.parent / "articles" / "000_b4d3f6eb2287ccfb.txt"


def _vocabulary() -> list[str]:
    words = SAMPLE.read_text(encoding="utf-8").split()
    return [w.strip(".,()") for w in words[3:] if w.strip(".,()").isalpha()]


def sentence(rng: random.Random, words: list[str]) -> str:
    chosen = rng.choices(words, k=rng.randint(12, 28))
    return " ".join(chosen).capitalize() + "."


def paragraph(rng: random.Random, words: list[str]) -> str:
    return " ".join(sentence(rng, words) for _ in range(rng.randint(3, 5)))


def article_text(n: int, rng: random.Random, words: list[str]) -> str:
    day = date(2020, 1, 1) + timedelta(days=n % 2000)
    parts = [f"date {day.isoformat()} {paragraph(rng, words)}"]
    for _ in range(rng.randint(2, 4)):
        parts.append(" ".join(rng.choices(words, k=3)).title())
        parts.append(paragraph(rng, words))
    return "\n\n".join(parts) + "\n"


def write_corpus(out: Path, count: int, seed: int = 1) -> int:
    """Write `count` articles into out/; return the bytes written."""
    rng = random.Random(seed)
    words = _vocabulary()
    out.mkdir(parents=True, exist_ok=True)
    total = 0
    for n in range(count):
        data = article_text(n, rng, words).encode("utf-8")
        (out / f"{n:06d}_{rng.getrandbits(64):016x}.txt").write_bytes(data)
        total += len(data)
    return total


if __name__ == "__main__":
    written = write_corpus(Path(sys.argv[1]), int(sys.argv[2]))
    print(f"wrote {sys.argv[2]} articles, {written:,} bytes")
