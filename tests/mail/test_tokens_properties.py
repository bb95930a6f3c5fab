"""Properties of token parsing: whatever a stranger sends, the answer is quick and safe.

Tokens arrive from the query string or a form body of anyone's request, so
the parser must return or raise TokenError, with bounded work, for every
string; and every token the issuer makes must verify to its address.
"""

from __future__ import annotations

import contextlib
import string
import threading
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from digest.mail.tokens import (
    EARLIEST,
    LATEST,
    MAX_TOKEN,
    TokenError,
    _base36,
    issued_at,
    make_token,
    verify_token,
)

SECRET = "property-secret-0123456789abcdef"
NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
FAST = settings(max_examples=300, deadline=timedelta(milliseconds=200))

_TOKEN_CHARS = string.ascii_letters + string.digits + "-_.+ =%\u0661\x00"
# Text that looks like a token: three-ish fields of token characters, signs, digits.
token_like = st.lists(st.text(alphabet=_TOKEN_CHARS, max_size=60), min_size=1,
                      max_size=5).map(".".join)
anything = st.one_of(st.text(max_size=2000), token_like,
                     st.text(alphabet="-0123456789az.A", max_size=40))
moments = st.integers(min_value=EARLIEST, max_value=LATEST - 1).map(
    lambda s: datetime.fromtimestamp(s, UTC))
addresses = st.one_of(st.emails(), st.text(min_size=1, max_size=80).filter(
    lambda a: len(a.encode("utf-8", "surrogatepass")) <= 254))  # RFC 5321 limit


def _well_formed(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@FAST
@given(anything, st.sampled_from(["unsubscribe", "confirm"]))
@example("AA.-1.AA", "unsubscribe")
@example("AA.-1." + "A" * 43, "confirm")
@example("YW5u.-zz." + "A" * 43, "unsubscribe")
def test_any_string_is_answered_quickly(token: str, purpose: str) -> None:
    outcome: list[str] = []

    def check() -> None:  # in a thread: an endless loop fails the test, not hangs it
        try:
            verify_token(SECRET, purpose, token, NOW, timedelta(days=3))
        except TokenError as exc:
            assert exc.reason in ("malformed", "invalid", "expired")
        with contextlib.suppress(TokenError):
            issued_at(token)
        outcome.append("done")

    worker = threading.Thread(target=check, daemon=True)
    worker.start()
    worker.join(timeout=2)
    assert outcome == ["done"], f"no answer within 2 s for {token[:40]!r}"


@FAST
@given(st.text(alphabet=string.ascii_letters + string.digits + "-_.", min_size=MAX_TOKEN + 1,
               max_size=MAX_TOKEN + 50))
def test_overlong_tokens_are_malformed(token: str) -> None:
    with pytest.raises(TokenError) as caught:
        verify_token(SECRET, "unsubscribe", token, NOW, None)
    assert caught.value.reason == "malformed"


@FAST
@given(addresses.filter(_well_formed), moments, st.sampled_from(["unsubscribe", "confirm"]))
def test_issued_tokens_round_trip(address: str, moment: datetime, purpose: str) -> None:
    token = make_token(SECRET, purpose, address, moment)
    assert len(token) <= MAX_TOKEN
    assert verify_token(SECRET, purpose, token, moment + timedelta(days=1), None) == address
    assert issued_at(token) == moment
    other = "confirm" if purpose == "unsubscribe" else "unsubscribe"
    with pytest.raises(TokenError):
        verify_token(SECRET, other, token, moment, None)


@FAST
@given(st.emails(), moments, st.data())
def test_any_one_character_change_is_refused(address: str, moment: datetime,
                                             data: st.DataObject) -> None:
    token = make_token(SECRET, "unsubscribe", address, moment)
    where = data.draw(st.integers(min_value=0, max_value=len(token) - 1))
    replacement = data.draw(st.sampled_from(string.ascii_letters + string.digits + "-_.+"))
    changed = token[:where] + replacement + token[where + 1:]
    if changed != token:
        with pytest.raises(TokenError):
            verify_token(SECRET, "unsubscribe", changed, moment, None)


@FAST
@given(st.integers(min_value=0, max_value=36**12))
def test_base36_is_canonical(number: int) -> None:
    text = _base36(number)
    assert int(text, 36) == number
    assert text == "0" or text[0] != "0"


@given(st.integers(max_value=-1))
def test_base36_refuses_negative_numbers(number: int) -> None:
    with pytest.raises(ValueError):
        _base36(number)


@pytest.mark.parametrize("moment", [datetime(2019, 12, 31, tzinfo=UTC),
                                    datetime(2200, 1, 1, tzinfo=UTC)])
def test_tokens_outside_the_sane_range_are_not_made(moment: datetime) -> None:
    with pytest.raises(ValueError):
        make_token(SECRET, "unsubscribe", "ann@example.org", moment)
