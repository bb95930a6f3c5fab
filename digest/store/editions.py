"""Every digest edition with the articles it carried, for the web copies of the digests.

Read-only: editions are made by :mod:`digest.store.outbox`. An edition's
articles are the snapshot taken when it was made (title, summary, ... as the
mail showed them), so its web copy shows what its mail did, whatever the
articles became since.
"""

from __future__ import annotations

import sqlalchemy as sa

from digest.model import DigestItem, Edition, EditionStatus
from digest.store.database import Store
from digest.store.schema import edition_articles, editions
from digest.store.timestamps import from_iso


def load_editions(store: Store) -> list[Edition]:
    """Every edition made so far (being delivered or done), oldest first."""
    with store.reading() as conn:
        rows = conn.execute(sa.select(editions).order_by(editions.c.id)).all()
        items: dict[int, list[DigestItem]] = {}
        for a in conn.execute(sa.select(edition_articles).order_by(
                edition_articles.c.edition_id, edition_articles.c.position)):
            items.setdefault(a.edition_id, []).append(DigestItem(
                slug=a.slug, title=a.title, summary=a.summary, author=a.author,
                published=from_iso(a.published), image=a.image))
    return [Edition(row.id, row.uid, EditionStatus(row.status), from_iso(row.created_at),
                    tuple(items.get(row.id, ())), row.recipient_count) for row in rows]
