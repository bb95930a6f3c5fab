"""Which articles the next digest edition carries (pure functions, no I/O).

An edition collects the published articles (status 'published', published
at or before now) that no earlier edition carried, newest first.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime

from digest.model import ArticleStatus, DigestItem, StoredArticle


def select_articles(articles: Iterable[StoredArticle], carried: Collection[str],
                    now: datetime) -> list[StoredArticle]:
    """Articles due in the next edition, newest first (ties by key, for a stable order)."""
    due = [a for a in articles
           if a.status == ArticleStatus.PUBLISHED and a.published <= now and a.key not in carried]
    due.sort(key=lambda a: a.key)
    due.sort(key=lambda a: a.published, reverse=True)
    return due


def to_item(article: StoredArticle) -> DigestItem:
    return DigestItem.of(article)
