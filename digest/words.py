"""Words for counts in messages, subjects and summaries: "1 new article", "2 new articles"."""

from __future__ import annotations


def plural(count: int, word: str, many: str | None = None) -> str:
    """'1 article', '2 articles'; `many` when the plural is not word + 's'."""
    return f"{count} {word if count == 1 else many or word + 's'}"
