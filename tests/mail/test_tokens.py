from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from digest.errors import DigestError
from digest.mail.tokens import TokenError, issued_at, make_token, verify_token

SECRET = "k" * 32
T0 = datetime(2024, 5, 6, 7, 0, tzinfo=UTC)


def test_round_trip_and_url_safe() -> None:
    token = make_token(SECRET, "unsubscribe", "ann@example.org", T0)
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")
    assert verify_token(SECRET, "unsubscribe", token, T0 + timedelta(days=400), None) == \
        "ann@example.org"
    assert issued_at(token) == T0


def test_non_ascii_address_round_trips() -> None:
    token = make_token(SECRET, "confirm", "jörg@bücher.example", T0)
    assert verify_token(SECRET, "confirm", token, T0, timedelta(days=2)) == "jörg@bücher.example"


def test_wrong_purpose_is_rejected() -> None:
    token = make_token(SECRET, "confirm", "ann@example.org", T0)
    with pytest.raises(TokenError) as caught:
        verify_token(SECRET, "unsubscribe", token, T0, None)
    assert caught.value.reason == "invalid"
    assert isinstance(caught.value, DigestError)


def test_other_secret_is_rejected() -> None:
    token = make_token(SECRET, "unsubscribe", "ann@example.org", T0)
    with pytest.raises(TokenError):
        verify_token("another-secret", "unsubscribe", token, T0, None)


def test_tampered_address_and_time_are_rejected() -> None:
    token = make_token(SECRET, "unsubscribe", "ann@example.org", T0)
    other = make_token(SECRET, "unsubscribe", "bob@example.org", T0)
    forged = other.split(".")[0] + "." + ".".join(token.split(".")[1:])
    with pytest.raises(TokenError):
        verify_token(SECRET, "unsubscribe", forged, T0, None)
    address, _, sig = token.split(".")
    later = make_token(SECRET, "unsubscribe", "ann@example.org", T0 + timedelta(days=1))
    with pytest.raises(TokenError):
        verify_token(SECRET, "unsubscribe", f"{address}.{later.split('.')[1]}.{sig}", T0 +
                     timedelta(days=2), None)


@pytest.mark.parametrize("bad", ["", "abc", "a.b", "a.b.c.d", "!!.1.xx", "YQ.zz.%%%",
                                 "YW5u.+1.abc", "YW5u.1_0.abc"])
def test_malformed_tokens(bad: str) -> None:
    with pytest.raises(TokenError) as caught:
        verify_token(SECRET, "unsubscribe", bad, T0, None)
    assert caught.value.reason in ("malformed", "invalid")


def test_non_canonical_spelling_is_rejected() -> None:
    token = make_token(SECRET, "unsubscribe", "ann@example.org", T0)
    address, issued, sig = token.split(".")
    with pytest.raises(TokenError):
        verify_token(SECRET, "unsubscribe", f"{address}.0{issued}.{sig}", T0, None)


def test_expiry_and_future_tokens() -> None:
    token = make_token(SECRET, "confirm", "ann@example.org", T0)
    assert verify_token(SECRET, "confirm", token, T0 + timedelta(days=2), timedelta(days=2))
    with pytest.raises(TokenError) as caught:
        verify_token(SECRET, "confirm", token, T0 + timedelta(days=2, seconds=1),
                     timedelta(days=2))
    assert caught.value.reason == "expired"
    with pytest.raises(TokenError):
        verify_token(SECRET, "confirm", token, T0 - timedelta(hours=1), None)
    assert verify_token(SECRET, "confirm", token, T0 - timedelta(minutes=1), None)


def test_needs_secret_and_aware_time() -> None:
    with pytest.raises(ValueError):
        make_token("", "confirm", "ann@example.org", T0)
    with pytest.raises(ValueError):
        make_token(SECRET, "confirm", "ann@example.org", datetime(2024, 1, 1))
