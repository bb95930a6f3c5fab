"""Which articles keep their identity (entry id, slug) when two files claim the same one.

An entry id and a page (slug) belong to one article only. An article that
keeps the id and slug it was published under wins over a newcomer; the loser
is not published and is reported as a problem.
"""

from __future__ import annotations

from digest.errors import ArticleError, shown_path
from digest.model import StoredArticle

Identity = tuple[str, str]  # (entry id, slug)


def shown(records: dict[str, StoredArticle], kept: set[str] | None = None) -> dict[str, str]:
    """The articles a publish with these records shows (key -> content hash)."""
    if kept is None:
        kept, _ = unique({k: (r.entry_id, r.slug) for k, r in records.items()})
    return {k: r.content_hash for k, r in records.items() if k in kept and r.status == "published"}


def compare(before: dict[str, str], after: dict[str, str]) -> tuple[int, int, int]:
    """(new, updated, removed) between two sets of shown articles."""
    updated = sum(1 for key, digest in after.items() if key in before and before[key] != digest)
    return len(after.keys() - before.keys()), updated, len(before.keys() - after.keys())


def established(stored: dict[str, StoredArticle]) -> dict[str, Identity]:
    """The (entry id, slug) each remembered article was published under."""
    return {k: (r.entry_id, r.slug) for k, r in stored.items()}


def unique(identities: dict[str, Identity], established: dict[str, Identity] | None = None,
           ) -> tuple[set[str], list[ArticleError]]:
    """Keys that keep their (entry id, slug); one that repeats another's loses.

    An article that keeps the id and slug it was published under wins over a
    newcomer (a new file, or one whose id or slug changed); among equals, path order.
    """
    kept: set[str] = set()
    problems: list[ArticleError] = []
    ids: dict[str, str] = {}
    slugs: dict[str, str] = {}
    old = established or {}
    for key in sorted(identities, key=lambda k: (old.get(k) != identities[k], k)):
        entry_id, slug = identities[key]
        clash = _clash(key, entry_id, slug, ids, slugs)
        if clash:
            problems.append(clash)
        else:
            kept.add(key)
    return kept, problems


def _clash(key: str, entry_id: str, slug: str, ids: dict[str, str],
           slugs: dict[str, str]) -> ArticleError | None:
    if entry_id in ids:
        return ArticleError(key, f"has the same id as {shown_path(ids[entry_id])}, which keeps it; "
                            f"{shown_path(key)} is not published",
                            f"give {shown_path(key)} a different 'id' header")
    if slug.lower() in slugs:
        return ArticleError(key, f"would have the same page as {shown_path(slugs[slug.lower()])} "
                            f"(slug {slug!r}), which keeps it; {shown_path(key)} is not published",
                            f"rename {shown_path(key)} or set a different 'slug' in it")
    ids[entry_id] = key
    slugs[slug.lower()] = key
    return None
