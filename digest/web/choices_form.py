"""The subscription choices as a browser posts them: ``topics=a&topics=b&cadence=weekly``.

Anyone can post anything, so this reads strictly and with bounded work: an
url-encoded body of at most MAX_BODY bytes (the caller's limit), at most
MAX_FIELDS fields; ``topics`` values must be among the topics offered (tag
slugs of published articles; others are dropped: a tag may have gone since
the page was shown); ``cadence`` must be one of the cadences (missing:
every for a new subscriber, unchanged for one on the list). Any other field
(``token``, ``email``) is ignored here.
"""

from __future__ import annotations

from collections.abc import Collection
from urllib.parse import parse_qsl

from digest.errors import SubscriberError
from digest.mail.choices import MAX_TOPICS, cadence_from_text
from digest.mail.subscribers import Choices

MAX_FIELDS = MAX_TOPICS + 10


def choices_from_form(body: bytes, offered: Collection[str]) -> Choices:
    """The Choices in a posted form; SubscriberError when it cannot be read."""
    try:
        fields = parse_qsl(body.decode("utf-8"), keep_blank_values=True,
                           max_num_fields=MAX_FIELDS)
    except UnicodeDecodeError:
        raise SubscriberError("the form is not UTF-8", "send the form from the page") from None
    except ValueError:
        raise SubscriberError("the form has too many fields",
                              f"choose at most {MAX_TOPICS} topics") from None
    topics = sorted({value for name, value in fields if name == "topics" and value in offered})
    cadences = [value for name, value in fields if name == "cadence"]
    if len(cadences) > 1:
        raise SubscriberError("the form names more than one cadence", "choose one")
    # Topics are checkboxes: none ticked is everything. A form without a cadence field
    # (a template that offers topics only) leaves the cadence as it is.
    given = frozenset(("topics", "cadence") if cadences else ("topics",))
    return Choices(tuple(topics), cadence_from_text(cadences[0] if cadences else "", "cadence"),
                   given)
