"""What a format reader found in one article file, before it becomes an Article.

Shared by every format; imports no reader, so the formats never import
:mod:`digest.publish.reading` (which imports them).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Fields:
    """What a format reader found; reading.build turns it into an Article."""

    headers: dict[str, object]
    lead: str  # plain text of the first paragraph
    body_html: str
    first_heading: str | None = None
