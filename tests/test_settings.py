"""Settings: defaults, parsing, and errors that name the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from digest.errors import ConfigError
from digest.settings import load_settings, parse_duration


def test_defaults(tmp_path: Path) -> None:
    settings = load_settings({}, tmp_path)
    assert settings.output_dir == tmp_path / "public"
    assert settings.feed_max_items == 50
    assert settings.publish_interval == 300
    assert settings.misfire_grace_time == 3600
    assert settings.smtp_effective_port == 587


@pytest.mark.parametrize(("value", "day"), [("", None), ("monday", 0), ("Sun", 6),
                                            (" Wednesday ", 2)])
def test_weekly_day(tmp_path: Path, value: str, day: int | None) -> None:
    values = {"WEEKLY_DAY": value} if value else {}
    assert load_settings(values, tmp_path).weekly_day == (0 if day is None else day)


def test_secrets_are_not_in_repr(tmp_path: Path) -> None:
    settings = load_settings({"SMTP_PASSWORD": "s3cret-pw", "SECRET_KEY": "k3y-value"}, tmp_path)
    assert "s3cret-pw" not in repr(settings) and "k3y-value" not in repr(settings)


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("BASE_URL", "example.org", "not an absolute http(s) URL"),
    ("FEED_MAX_ITEMS", "0", "out of range"),
    ("SITE_TIMEZONE", "Mars/Olympus", "not a known time zone"),
    ("SMTP_SECURITY", "tls", "not one of starttls, ssl, none"),
    ("SMTP_PORT", "99999", "out of range"),
    ("PUBLISH_INTERVAL", "soon", "not a duration"),
    ("DIGEST_SCHEDULE", "daily", "not a crontab expression"),
    ("DIGEST_RECIPIENTS", "a@example.org, nope", "'nope' is not an email address"),
    ("DIGEST_SUBJECT", "{site} {oops}", "unknown placeholder"),
    ("DIGEST_FROM", "News <bad>", "not an email address"),
    ("WEEKLY_DAY", "someday", "not a day of the week"),
])
def test_bad_values_name_the_setting(tmp_path: Path, name: str, value: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({name: value}, tmp_path)
    assert name in caught.value.message
    assert expected in caught.value.message
    assert caught.value.hint


def test_durations() -> None:
    assert parse_duration("X", "90") == 90
    assert parse_duration("X", "5m") == 300
    assert parse_duration("X", "2h") == 7200
    assert parse_duration("X", "250ms") == 0.25


def test_recipients_are_deduplicated(tmp_path: Path) -> None:
    settings = load_settings({"DIGEST_RECIPIENTS": "a@x.org, b@x.org a@x.org"}, tmp_path)
    assert settings.digest_recipients == ("a@x.org", "b@x.org")
