"""A subscriber's choices, read from people: topics (tag slugs) and cadence.

Topics are the URL names of tags (:func:`digest.model.tag_slug`): ``python``,
``plain-text``. Typed by an operator (``--topics "Python, Plain Text"``) or
read from a file, each is turned into its slug; posted by the manage form,
they must already be slugs (the form only offers slugs). No topic means
everything. Cadence is ``every`` (each digest) or ``weekly`` (WEEKLY_DAY).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from digest.errors import SubscriberError
from digest.model import Cadence, tag_slug

MAX_TOPICS = 50
_SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
CADENCES = tuple(c.value for c in Cadence)


def topics_from_text(text: str, where: str = "topics") -> tuple[str, ...]:
    """Comma separated tag names or slugs -> sorted unique slugs ('' -> everything)."""
    return checked_topics((tag_slug(part) for part in text.split(",") if part.strip()), where)


def checked_topics(slugs: Iterable[str], where: str = "topics") -> tuple[str, ...]:
    """Slugs as given, checked: SubscriberError for one that is not a slug or too many."""
    found: set[str] = set()
    for slug in slugs:
        if len(slug) > 80 or not (_SLUG.match(slug) or _is_hashed(slug)):
            raise SubscriberError(f"{where}: {slug[:40]!r} is not a topic",
                                  "topics are tag names, e.g. python, plain-text")
        found.add(slug)
        if len(found) > MAX_TOPICS:
            raise SubscriberError(f"{where}: more than {MAX_TOPICS} topics",
                                  "choose fewer topics, or none for everything")
    return tuple(sorted(found))


def cadence_from_text(text: str, where: str = "cadence") -> Cadence:
    word = text.strip().lower() or Cadence.EVERY.value
    try:
        return Cadence(word)
    except ValueError:
        raise SubscriberError(f"{where}: {text[:40]!r} is not a cadence",
                              "use every (each digest) or weekly") from None


def _is_hashed(slug: str) -> bool:
    return slug.startswith("tag-") and len(slug) == 16
