"""Write N articles like a real site's, for benchmarks.

    python bench/corpus.py OUT_DIR N

Articles look like the real sample (a date line with the lead, section
headings, three to five paragraphs, about 2.5 kB) and are reproducible: the
same N gives the same files. Like a real publication they carry tags (one to
three of about N/50 tags, so every tag page and tag feed is built) and some
carry a picture: every tenth article is Markdown with YAML front matter and an
image beside it in ``images/`` (a few kB), which the publish copies as an asset.
"""

from __future__ import annotations

import random
import sys
import zlib
from datetime import date, timedelta
from pathlib import Path

SAMPLE = Path(__file__).resolve().parent.parent / "articles" / "000_b4d3f6eb2287ccfb.txt"
IMAGES = "images"
MARKDOWN_EVERY = 10  # every tenth article is Markdown with an image


def _vocabulary() -> list[str]:
    words = SAMPLE.read_text(encoding="utf-8").split()
    return [w.strip(".,()") for w in words[3:] if w.strip(".,()").isalpha()]


def sentence(rng: random.Random, words: list[str]) -> str:
    chosen = rng.choices(words, k=rng.randint(12, 28))
    return " ".join(chosen).capitalize() + "."


def paragraph(rng: random.Random, words: list[str]) -> str:
    return " ".join(sentence(rng, words) for _ in range(rng.randint(3, 5)))


def tag_names(count: int, words: list[str]) -> list[str]:
    """`count` distinct tag names (one or two words), the same for the same count."""
    rng = random.Random(count)
    names: dict[str, None] = {}
    while len(names) < count:
        names[" ".join(rng.choices(words, k=rng.randint(1, 2))).lower()] = None
    return list(names)


def article_text(n: int, rng: random.Random, words: list[str], tags: list[str]) -> str:
    """One plain-text article: a tags header line, the date line with the lead, sections."""
    day = date(2020, 1, 1) + timedelta(days=n % 2000)
    chosen = ", ".join(dict.fromkeys(rng.choices(tags, k=rng.randint(1, 3))))
    parts = [f"tags {chosen}\ndate {day.isoformat()} {paragraph(rng, words)}"]
    for _ in range(rng.randint(2, 4)):
        parts.append(" ".join(rng.choices(words, k=3)).title())
        parts.append(paragraph(rng, words))
    return "\n\n".join(parts) + "\n"


def as_markdown(text: str, image: str) -> str:
    """The same article as Markdown with front matter and a picture after the lead."""
    head, _, rest = text.partition("\ndate ")
    day, _, body = rest.partition(" ")
    lead, _, sections = body.partition("\n\n")
    tags = head.removeprefix("tags ").split(", ")
    blocks = [lead, f"![A picture]({image})"]
    for block in sections.strip().split("\n\n"):
        blocks.append(block if block.endswith(".") else f"## {block}")
    front = f"---\ndate: {day}\ntags: [{', '.join(tags)}]\n---\n"
    return front + "\n\n".join(blocks) + "\n"


def png(rng: random.Random) -> bytes:
    """A small valid PNG (grey noise, 48x48 to 96x96): a few kB, like a thumbnail."""
    side = rng.randint(48, 96)
    rows = b"".join(b"\x00" + rng.randbytes(side) for _ in range(side))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    header = side.to_bytes(4, "big") * 2 + b"\x08\x00\x00\x00\x00"
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


def write_corpus(out: Path, count: int, seed: int = 1) -> int:
    """Write `count` articles (and their images) into out/; return the bytes written."""
    rng = random.Random(seed)
    words = _vocabulary()
    tags = tag_names(max(10, count // 50), words)
    (out / IMAGES).mkdir(parents=True, exist_ok=True)
    total = 0
    for n in range(count):
        text = article_text(n, rng, words, tags)
        name = f"{n:06d}_{rng.getrandbits(64):016x}"
        if n % MARKDOWN_EVERY == MARKDOWN_EVERY - 1:
            image = f"{IMAGES}/{name}.png"
            picture = png(rng)
            (out / image).write_bytes(picture)
            data = as_markdown(text, image).encode("utf-8")
            (out / f"{name}.md").write_bytes(data)
            total += len(picture) + len(data)
        else:
            data = text.encode("utf-8")
            (out / f"{name}.txt").write_bytes(data)
            total += len(data)
    return total


if __name__ == "__main__":
    written = write_corpus(Path(sys.argv[1]), int(sys.argv[2]))
    print(f"wrote {sys.argv[2]} articles, {written:,} bytes")
