"""The posted manage form (a stranger's input): read strictly, with bounded work."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from digest.errors import SubscriberError
from digest.mail.subscribers import Choices
from digest.model import Cadence
from digest.web.choices_form import MAX_FIELDS, choices_from_form

OFFERED = ("meta", "plain-text", "python", "reference")


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=2000))
def test_any_bytes_give_choices_among_the_offered_or_a_subscriber_error(body: bytes) -> None:
    try:
        found = choices_from_form(body, OFFERED)
    except SubscriberError:
        return
    assert set(found.topics) <= set(OFFERED)
    assert list(found.topics) == sorted(set(found.topics))
    assert found.cadence in tuple(Cadence)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(OFFERED), max_size=8),
       st.lists(st.text(max_size=12), max_size=4),
       st.sampled_from([None, *Cadence]),
       st.lists(st.tuples(st.sampled_from(["token", "email", "x"]), st.text(max_size=20)),
                max_size=3))
def test_what_the_page_posts_is_read_back(chosen: list[str], strangers: list[str],
                                          cadence: Cadence | None,
                                          others: list[tuple[str, str]]) -> None:
    fields = [("topics", t) for t in chosen + strangers] + others
    if cadence is not None:
        fields.append(("cadence", cadence.value))
    found = choices_from_form(urlencode(fields).encode(), OFFERED)
    topics = tuple(sorted(set(chosen) | (set(strangers) & set(OFFERED))))
    assert (found.topics, found.cadence) == (topics, cadence or Cadence.EVERY)
    # What a subscriber on the list gets set: the topics always (no box ticked is
    # everything), the cadence only when the form has the field.
    assert found.changes() == ({"topics": ",".join(topics)}
                               | ({"cadence": cadence.value} if cadence else {}))
    assert found.values() == Choices(topics, cadence or Cadence.EVERY).values()


@pytest.mark.parametrize(("body", "message"), [
    (b"cadence=daily", "not a cadence"),
    (b"cadence=every&cadence=weekly", "more than one cadence"),
    (b"topics=\xff", "not UTF-8"),
    ("&".join(["topics=meta"] * (MAX_FIELDS + 1)).encode(), "too many fields"),
])
def test_unreadable_forms_are_refused(body: bytes, message: str) -> None:
    with pytest.raises(SubscriberError, match=message):
        choices_from_form(body, OFFERED)
