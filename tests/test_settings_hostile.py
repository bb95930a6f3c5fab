"""Hostile and unlucky settings: refused at start with exit 2 naming the setting, or
handled the way they are used (envelope, headers, links), checked over real SMTP.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
from collections.abc import Callable
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import parseaddr
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from hypothesis import given, settings
from hypothesis import strategies as st

from digest.cli.main import cli
from digest.errors import ConfigError
from digest.headers import POLICY, list_id_value, set_text
from digest.mail.render import one_line
from digest.settings import SPECS, load_settings, shown_database_url
from digest.store.database import Store
from tests.conftest import base_env, digest_cli
from tests.fixtures_mail import Received, SMTPServer, add_articles, clean_environ, sample_articles

Start = Callable[..., SMTPServer]


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    clean_environ(monkeypatch)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "articles").mkdir()
    values = base_env(tmp_path)
    values["DATABASE_URL"] = f"sqlite:///{tmp_path / 'state.sqlite3'}"
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    store = Store.open(values["DATABASE_URL"], tmp_path)
    try:
        add_articles(store, *sample_articles(2))
    finally:
        store.close()
    return values


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def with_server(monkeypatch: pytest.MonkeyPatch, smtp_servers: Start, **values: str
                ) -> SMTPServer:
    server = smtp_servers()
    for key, value in {**server.env(), **values}.items():
        monkeypatch.setenv(key, value)
    return server


def header_lines(received: Received) -> list[bytes]:
    return received.data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


# -- refused at start ------------------------------------------------------------------------

BAD = [
    ("DIGEST_FROM", "News <bad>", "not an email address"),
    ("DIGEST_FROM", "A <b> <news@example.org>", "display name"),
    ("DIGEST_FROM", "x" * 70 + " <news@example.org>", "too long"),
    ("DIGEST_FROM", "=?utf-8?q?Bank?= <news@example.org>", "RFC 2047-encoded"),
    ("DIGEST_RECIPIENTS", "ann@example.org, bob@", "'bob@' is not an email address"),
    ("DIGEST_RECIPIENTS", "x@xn--zz.org", "not an email address"),
    ("UNSUBSCRIBE_MAILTO", "nope", "not an email address"),
    ("BASE_URL", "https://exa mple.org/", "not a valid host name"),
    ("BASE_URL", "https://example.org:99999/", "not a valid URL"),
    ("BASE_URL", "https://user:pw@example.org/", "user name"),
    ("BASE_URL", "https://example.org/" + "a" * 400, "longer than"),
    ("BASE_URL", "https://example.org/?x=1", "query or fragment"),
    ("SMTP_TIMEOUT", "99999999999999d", "out of range"),
    ("SMTP_TIMEOUT", "10ms", "out of range"),
    ("SMTP_TIMEOUT", "1e3", "not a duration"),
    ("PUBLISH_INTERVAL", "8d", "out of range"),
    ("PUBLISH_INTERVAL", "0", "out of range"),
    ("MISFIRE_GRACE_TIME", "500ms", "out of range"),
    ("MISFIRE_GRACE_TIME", "nan", "not a duration"),
    ("SMTP_RATE_LIMIT", "nan", "not a number"),
    ("SMTP_RATE_LIMIT", "inf", "not a number"),
    ("SMTP_RATE_LIMIT", "-1", "not a number"),
    ("SMTP_RATE_LIMIT", "0", "out of range"),
    ("SMTP_RATE_LIMIT", "20000", "out of range"),
    ("MAX_ARTICLE_BYTES", "2147483648", "out of range"),
    ("MAX_ARTICLE_BYTES", "10", "out of range"),
    ("FEED_MAX_ITEMS", "9" * 5000, "not a whole number"),
    ("DIGEST_MAX_ITEMS", "-5", "out of range"),
    ("SERVE_PORT", "٨٠٨٠", "not a whole number"),
    ("SMTP_PORT", "0", "out of range"),
    ("DATABASE_URL", "mysql://x", "mysql is not supported"),
    ("DATABASE_URL", "postgresql+asyncpg://x/db", "not supported"),
    ("DATABASE_URL", "digest.sqlite3", "not a database URL"),
    ("DIGEST_SUBJECT", "{site} {oops}", "unknown placeholder {oops}"),
    ("DIGEST_SUBJECT", "{count:>999999999}", "unknown placeholder {count:>999999999}"),
    ("DIGEST_SUBJECT", "{site.__class__}", "unknown placeholder"),
    ("DIGEST_SUBJECT", "{0}", "unknown placeholder"),
    ("DIGEST_SUBJECT", "{site", "stray brace"),
    ("SITE_TITLE", "x" * 1001, "longer than 1000"),
]


@pytest.mark.parametrize(("name", "value", "expected"), BAD,
                         ids=[f"{n}={v[:20]}" for n, v, _ in BAD])
def test_bad_setting_stops_start_with_exit_2(env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                                             name: str, value: str, expected: str) -> None:
    monkeypatch.setenv(name, value)
    result = invoke("check")
    assert result.exit_code == 2, result.output
    assert f"error: {name}" in result.stderr
    assert expected in result.stderr
    assert "hint:" in result.stderr


@pytest.mark.parametrize(("name", "value"), [
    ("DATABASE_URL", "mysql://x"), ("SMTP_RATE_LIMIT", "nan"),
    ("DIGEST_FROM", "News <bad>"), ("DIGEST_RECIPIENTS", "Ann@Example.org nope"),
])
def test_bad_setting_in_a_real_process(tmp_path: Path, name: str, value: str) -> None:
    (tmp_path / "articles").mkdir()
    result = digest_cli("publish", cwd=tmp_path, env={name: value})
    assert result.returncode == 2
    assert f"error: {name}" in result.stderr
    assert "Traceback" not in result.stderr and "ModuleNotFoundError" not in result.stderr


@pytest.mark.parametrize("value", [
    "postgres://bob:Hunter2pw@db.example.org/news",  # the scheme many hosts hand out
    "postgresql+asyncpg://bob:Hunter2pw@db.example.org/news",
    "mysql://bob:Hunter2pw@db.example.org/news",
    "bob:Hunter2pw@db.example.org/news",  # no scheme at all
    "postgresql://bob:Hunter2pw@db.example.org:abc/news",  # a port that is not a number
    "postgresql://bob:Hunter2pw@[::1/news",  # an unclosed IPv6 bracket
    "postgresql://bob:Hunter2pw@@db.example.org:x/news",  # an '@' in the password
])
def test_bad_database_url_never_shows_its_password(tmp_path: Path, value: str) -> None:
    """A DATABASE_URL refused at start is named with its password masked, exit 2, and no
    traceback (a port that is not a number was a ValueError traceback from SQLAlchemy)."""
    (tmp_path / "articles").mkdir()
    for command in ("status", "publish"):
        result = digest_cli(command, cwd=tmp_path, env={"DATABASE_URL": value})
        assert result.returncode == 2, result.stderr
        assert "error: DATABASE_URL=" in result.stderr and "bob:***@" in result.stderr
        assert "hint: set DATABASE_URL=" in result.stderr
        assert "Hunter2pw" not in result.stdout + result.stderr
        assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("value", "tag"), [
    ("en", "en"), (" pt-BR ", "pt-BR"), ("en_US", "en-US"), ("zh-Hant-TW", "zh-Hant-TW"),
])
def test_site_language_takes_tags_and_locales(tmp_path: Path, value: str, tag: str) -> None:
    assert load_settings({"SITE_LANGUAGE": value}, tmp_path).site_language == tag


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=20))
def test_site_language_is_a_tag_or_refused_by_name(value: str) -> None:
    """Whatever is written, the pages' lang="..." and the feeds' language get a tag
    (letters, digits, hyphens) or the command stops naming SITE_LANGUAGE."""
    try:
        tag = load_settings({"SITE_LANGUAGE": value}, Path("/tmp")).site_language
    except ConfigError as exc:
        assert exc.message.startswith("SITE_LANGUAGE=")
        return
    assert re.fullmatch(r"[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*", tag)


def test_a_language_that_is_no_tag_is_refused(tmp_path: Path) -> None:
    (tmp_path / "articles").mkdir()
    result = digest_cli("publish", cwd=tmp_path, env={"SITE_LANGUAGE": 'en us"><script>'})
    assert result.returncode == 2, result.stderr
    assert "error: SITE_LANGUAGE='en us\"><script>' is not a language tag" in result.stderr
    assert "hint: set SITE_LANGUAGE to a language code" in result.stderr


@pytest.mark.parametrize("value", [
    "sqlite://", "sqlite:///", "sqlite:///:memory:", "SQLite+pysqlite://",
    "sqlite:///file::memory:?cache=shared", "sqlite:///digest.sqlite3?mode=memory",
])
def test_a_database_in_memory_is_refused(tmp_path: Path, value: str) -> None:
    """Each command is a new process: a SQLite database in memory would forget every
    subscriber and edition when the command ends. Refused by name, exit 2."""
    (tmp_path / "articles").mkdir()
    result = digest_cli("subscribers", "add", "ann@example.org", cwd=tmp_path,
                        env={"DATABASE_URL": value})
    assert result.returncode == 2, result.stderr
    assert f"error: DATABASE_URL={value!r} is a database in memory" in result.stderr
    assert "hint: set DATABASE_URL=sqlite:///digest.sqlite3" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_sqlite_file_is_still_accepted(tmp_path: Path) -> None:
    for value in ("sqlite:///state.sqlite3", f"sqlite:///{tmp_path / 'memory.sqlite3'}",
                  "sqlite:///:memory:.db"):
        assert load_settings({"DATABASE_URL": value}, tmp_path).database_url


@given(st.sampled_from(["postgresql", "postgres", "mysql", "postgresql+psycopg"]),
       st.from_regex(r"\A[^:@/]{0,10}\Z"), st.text(min_size=1, max_size=30))
@settings(max_examples=200, deadline=None)
def test_shown_database_url_masks_any_password(scheme: str, user: str, password: str) -> None:
    shown = shown_database_url(f"{scheme}://{user}:{password}@db.example.org:5432/news")
    assert shown == f"{scheme}://{user}:***@db.example.org:5432/news"


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("SMTP_TIMEOUT", "100ms", 0.1), ("SMTP_TIMEOUT", "1h", 3600.0),
    ("PUBLISH_INTERVAL", "7d", 7 * 86400.0), ("MISFIRE_GRACE_TIME", "1s", 1.0),
    ("SMTP_RATE_LIMIT", "0.01", 0.01), ("SMTP_RATE_LIMIT", "10000", 10000.0),
    ("MAX_ARTICLE_BYTES", "1_073_741_824", 1 << 30), ("MAX_ARTICLE_BYTES", "64", 64),
])
def test_range_limits_are_inclusive(tmp_path: Path, name: str, value: str,
                                    expected: float) -> None:
    spec = next(s for s in SPECS if s.env == name)
    assert getattr(load_settings({name: value}, tmp_path), spec.field) == expected


@pytest.mark.parametrize(("value", "expected"), [
    ("https://Bücher.Example/my news/", "https://xn--bcher-kva.example/my%20news/"),
    ("https://straße.de/ü/", "https://xn--strae-oqa.de/%C3%BC/"),
    ("HTTP://EXAMPLE.org:8080", "http://example.org:8080/"),
    ("https://example.org/a%2Fb/100%/", "https://example.org/a%2Fb/100%25/"),
    ("http://[::1]:8080/", "http://[::1]:8080/"),
])
def test_base_url_is_encoded(tmp_path: Path, value: str, expected: str) -> None:
    assert load_settings({"BASE_URL": value}, tmp_path).base_url == expected


def test_settings_module_does_not_import_sqlalchemy(tmp_path: Path) -> None:
    code = ("import sys; import digest.settings as s; s.load_settings({}, __import__('pathlib')"
            ".Path('.')); print('sqlalchemy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parent.parent, timeout=60, check=True)
    assert out.stdout.strip() == "False"


# -- every value a stranger may type: ConfigError or a value in range -----------------------


@given(st.sampled_from(SPECS), st.one_of(
    st.text(max_size=40),
    st.from_regex(r"\A[ +-]?[0-9_.]{0,20}(e[0-9]{1,3})?\s?(ms|s|m|h|d|nan|inf)?\Z"),
    st.sampled_from(["nan", "inf", "-inf", "1e308", "99999999999999d", "0.0000001ms"])))
@settings(max_examples=200, deadline=None)
def test_any_setting_value_is_accepted_in_range_or_refused(spec: object, value: str) -> None:
    name = spec.env  # type: ignore[attr-defined]
    try:
        loaded = load_settings({name: value}, Path("/tmp"))
    except ConfigError as exc:
        assert name in exc.message and exc.hint
        return
    got = getattr(loaded, spec.field)  # type: ignore[attr-defined]
    if isinstance(got, float):
        assert math.isfinite(got)
    bounds = {"SMTP_TIMEOUT": (0.1, 3600), "PUBLISH_INTERVAL": (0.1, 7 * 86400),
              "MISFIRE_GRACE_TIME": (1, 7 * 86400), "SMTP_RATE_LIMIT": (0.01, 10000),
              "MAX_ARTICLE_BYTES": (64, 1 << 30), "FEED_MAX_ITEMS": (1, 10000),
              "DIGEST_MAX_ITEMS": (1, 10000), "SERVE_PORT": (1, 65535)}
    if name in bounds and got is not None:
        low, high = bounds[name]
        assert low <= got <= high
    if name == "BASE_URL":
        assert got.isascii() and " " not in got and len(got) <= 300


# -- handled the way they are used, over SMTP ------------------------------------------------


def test_digest_from_with_colon_is_one_sender(env: dict[str, str], smtp_servers: Start,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    server = with_server(monkeypatch, smtp_servers,
                         DIGEST_FROM="News: x@evil.com <News@Example.org>")
    result = invoke("send", "--to", "ann@example.org")
    assert result.exit_code == 0, result.output
    (got,) = server.received
    assert got.mail_from == "news@example.org"
    sender = got.parsed()["From"].addresses
    assert [(a.display_name, a.addr_spec) for a in sender] == [("News: x@evil.com",
                                                                "news@example.org")]


def test_digest_from_with_comma_sends(env: dict[str, str], smtp_servers: Start,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    server = with_server(monkeypatch, smtp_servers,
                         DIGEST_FROM="Acme News, Weekly <news@acme.org>")
    assert invoke("send", "--to", "Ann@Example.org").exit_code == 0
    (got,) = server.received
    assert (got.mail_from, got.rcpt_to) == ("news@acme.org", "ann@example.org")
    assert b'From: "Acme News, Weekly" <news@acme.org>\r\n' in got.data


def test_base_url_with_space_and_umlaut_gives_clean_links(
        env: dict[str, str], smtp_servers: Start, monkeypatch: pytest.MonkeyPatch) -> None:
    server = with_server(monkeypatch, smtp_servers, BASE_URL="https://bücher.example/my news",
                         DIGEST_RECIPIENTS="ann@example.org")
    assert invoke("send").exit_code == 0
    (got,) = server.received
    link = str(got.parsed()["List-Unsubscribe"])
    assert link.startswith("<https://xn--bcher-kva.example/my%20news/unsubscribe?token=")
    assert " " not in link.split(">")[0]


@pytest.mark.parametrize("title", ["T" * 2000, "Ünïcödé " * 250, "a,b:" * 500,
                                   "x" * 59 + " " + "日本語" * 300])
def test_long_title_and_subject_are_folded(env: dict[str, str], smtp_servers: Start,
                                           monkeypatch: pytest.MonkeyPatch, title: str) -> None:
    title = title[:1000].strip()
    server = with_server(monkeypatch, smtp_servers, SITE_TITLE=title,
                         DIGEST_SUBJECT="{site} {count} {date} " + "S" * 900,
                         DIGEST_FROM="Example News, Weekly: the long one <news@example.org>",
                         UNSUBSCRIBE_MAILTO="leave+" + "x" * 50 + "@example.org",
                         DIGEST_RECIPIENTS="ann@example.org")
    assert invoke("subscribers", "add", "Bob " + "B" * 300 + " <bob@example.org>").exit_code == 0
    assert invoke("send").exit_code == 0
    assert len(server.received) == 2
    for got in server.received:
        assert max(len(line) for line in header_lines(got)) <= 998
        parsed = got.parsed()
        assert str(parsed["List-Id"]).endswith(" <digest.news.example.org>")
        assert str(parsed["Subject"]).startswith(title + " 2 ")
        assert str(parsed["Subject"]).endswith("S" * 900)
        assert parsed["To"].addresses[0].addr_spec == got.rcpt_to


# -- header folding, as a property ------------------------------------------------------------


@given(st.text(max_size=1200))
@settings(max_examples=200, deadline=None)
def test_folded_headers_fit_and_read_back(text: str) -> None:
    text = one_line(text)
    message = EmailMessage(policy=POLICY)
    set_text(message, "Subject", text)
    message.set_raw("List-Id", list_id_value(text, "digest.example.org"))
    message.set_content("x")
    raw = message.as_bytes(policy=POLICY)
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert all(len(line) <= 998 for line in head.split(b"\r\n"))
    for word in head.replace(b"\r\n", b" ").split(b" "):
        if word.startswith(b"=?"):
            assert len(word) <= 75
    parsed = message_from_bytes(raw, policy=policy.default)
    assert str(parsed["Subject"]) == text
    list_id = str(parsed["List-Id"])
    assert list_id.endswith("<digest.example.org>")
    phrase = list_id.removesuffix("<digest.example.org>").rstrip()
    if text.isascii() and phrase.startswith('"'):
        phrase = parseaddr(f"{phrase} <x@y.z>")[0]
    assert phrase == text
