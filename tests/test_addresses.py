"""One address normaliser: settings, subscribers, import, sign-up, envelope; file names.

Property tests (hypothesis) for what a stranger can type: normalising never
raises anything but SubscriberError and is idempotent; a parsed mailbox reads
back from its header unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from hypothesis import given, settings
from hypothesis import strategies as st

from digest.addresses import (
    Mailbox,
    file_name_part,
    is_normal_address,
    normalize_address,
    parse_mailbox,
)
from digest.cli.main import cli
from digest.errors import SubscriberError
from digest.headers import mailbox_value
from digest.mail.render import one_line
from digest.mail.subscribers import list_subscribers
from digest.store.database import Store
from tests.fixtures_mail import SMTPServer, cli_project

Start = Callable[..., SMTPServer]
_ATEXT = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+/=?^_`{|}~-"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    return cli_project(tmp_path, monkeypatch, articles=2)


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


# -- the normal form ---------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "normal"), [
    ("a@straße.de", "a@xn--strae-oqa.de"),  # IDNA 2008: never strasse.de
    ("A@STRASSE.DE", "a@strasse.de"),
    ("x@Bücher。Example", "x@xn--bcher-kva.example"),  # UTS 46 maps the ideographic dot
    ("Ann@Example.org", "ann@example.org"),
    ("a/b@example.com", "a/b@example.com"),
    ("x@xn--strae-oqa.de", "x@xn--strae-oqa.de"),
])
def test_normal_form(raw: str, normal: str) -> None:
    assert normalize_address(raw) == normal
    assert is_normal_address(normal)


@pytest.mark.parametrize("bad", ["x@xn--zz.org", "x@a_b.org", "x@\u2028.org", "x@exam ple.org",
                                 "x@" + "a" * 64 + ".org", "x@" + "ab." * 90 + "org"])
def test_bad_domains_are_refused(bad: str) -> None:
    with pytest.raises(SubscriberError, match="where"):
        normalize_address(bad, "where")


_local = st.text(alphabet=_ATEXT + ".\u00e9", min_size=0, max_size=70)
_domain = st.one_of(
    st.text(min_size=0, max_size=80),
    st.lists(st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=20),
             min_size=1, max_size=4).map(".".join),
    st.lists(st.sampled_from(["straße", "Bücher", "xn--strae-oqa", "example", "ORG", "a-b",
                              "\u3002", "-x", "x-", "ab--c", "١٢٣", "ﬁ"]),
             min_size=1, max_size=4).map(".".join),
)


@given(st.one_of(st.text(max_size=100), st.builds(lambda a, b: f"{a}@{b}", _local, _domain)))
@settings(max_examples=200, deadline=None)
def test_normalize_is_idempotent_and_raises_only_its_error(text: str) -> None:
    try:
        normal = normalize_address(text)
    except SubscriberError:
        return
    assert normal.isascii() and normal == normal.lower() and " " not in normal
    assert normalize_address(normal) == normal
    assert is_normal_address(normal)


# -- mailboxes (DIGEST_FROM) -------------------------------------------------------------


@pytest.mark.parametrize(("text", "name", "address"), [
    ("News: x@evil.com <news@example.org>", "News: x@evil.com", "news@example.org"),
    ("Acme News, Weekly <news@acme.org>", "Acme News, Weekly", "news@acme.org"),
    ('"Acme \\"Weekly\\"" <NEWS@acme.org>', 'Acme "Weekly"', "news@acme.org"),
    ("Jörg <j@straße.de>", "Jörg", "j@xn--strae-oqa.de"),
    ("news@example.org", "", "news@example.org"),
])
def test_parse_mailbox(text: str, name: str, address: str) -> None:
    assert parse_mailbox(text, "DIGEST_FROM") == Mailbox(name, address)


@pytest.mark.parametrize("bad", ["News <bad>", 'A "B" <a@b.org>', "A <b> <a@b.org>",
                                 "News <a@b.org", "=?utf-8?q?x?= <a@b.org>",
                                 "x" * 80 + " <a@b.org>", "A\nBcc: x@y.org <a@b.org>"])
def test_bad_mailboxes_are_refused(bad: str) -> None:
    with pytest.raises(SubscriberError, match="DIGEST_FROM"):
        parse_mailbox(bad, "DIGEST_FROM")


@given(st.text(max_size=80), st.sampled_from(["news@example.org", "a/b@example.com"]))
@settings(max_examples=200, deadline=None)
def test_a_parsed_mailbox_reads_back_from_its_header(name: str, address: str) -> None:
    for text in (f"{name} <{address}>", name):
        try:
            mailbox = parse_mailbox(text, "DIGEST_FROM")
        except SubscriberError:
            continue
        value = mailbox_value("From", mailbox.display_name, mailbox.address)
        raw = f"From: {value}\r\n\r\n".encode()
        assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
        assert all(len(word) <= 75 for word in re.findall(rb"=\?\S*?\?=", raw))
        parsed = message_from_bytes(raw, policy=policy.default)["From"].addresses
        assert len(parsed) == 1
        assert (parsed[0].display_name, parsed[0].addr_spec) == (mailbox.display_name,
                                                                 mailbox.address)


@given(st.text(max_size=300))
@settings(max_examples=200, deadline=None)
def test_a_subscriber_name_in_to_is_kept_or_left_out_never_broken(name: str) -> None:
    name = one_line(name)
    value = mailbox_value("To", name, "ann@example.org")
    raw = f"To: {value}\r\n\r\n".encode()
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    assert all(len(word) <= 75 for word in re.findall(rb"=\?\S*?\?=", raw))
    (parsed,) = message_from_bytes(raw, policy=policy.default)["To"].addresses
    assert parsed.addr_spec == "ann@example.org"
    assert parsed.display_name in (name, "")


# -- file names ----------------------------------------------------------------------------


@given(st.builds(lambda a, b: f"{a}@{b}", _local, _domain))
@settings(max_examples=200, deadline=None)
def test_file_name_part_is_one_safe_name(text: str) -> None:
    try:
        address = normalize_address(text)
    except SubscriberError:
        return
    part = file_name_part(address)
    assert "/" not in part and "\\" not in part and len(f"00001-{part}.eml") <= 255
    assert part not in (".", "..")


def test_dry_run_out_writes_every_valid_address(env: dict[str, str], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    long_local = "{" * 64
    long_domain = f"{'d' * 60}.{'e' * 60}.org"
    monkeypatch.setenv("DIGEST_RECIPIENTS",
                       f"a/b@example.com, x/.y/z@example.org, {long_local}@{long_domain}")
    out = tmp_path / "eml"
    result = invoke("send", "--dry-run", "--out", str(out))
    assert result.exit_code == 0, result.output
    files = sorted(p.name for p in out.iterdir())
    assert len(files) == 3
    assert files[:2] == ["00001-a%2Fb@example.com.eml", "00002-x%2F.y%2Fz@example.org.eml"]
    assert all((out / name).is_file() for name in files)  # nothing outside, nothing nested
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".eml") == []
    for name in files:
        to = message_from_bytes((out / name).read_bytes(), policy=policy.default)["To"]
        assert str(to).count("@") == 1


# -- import line numbers, one normaliser for settings and subscribers -----------------------


@pytest.mark.parametrize("separator", ["\u2028", "\u0085", "\x0b", "\x0c", "\u2029", "\x1e"])
def test_import_reports_real_line_numbers(env: dict[str, str], tmp_path: Path,
                                          separator: str) -> None:
    text = f"# list\nann@example.org\nnote{separator}still line three\nbob@example.org\nbad@\n"
    for name in ("list.txt", "list.csv"):
        path = tmp_path / name
        path.write_text(text, "utf-8")
        result = invoke("subscribers", "import", str(path))
        assert result.exit_code == 1
        assert f"{path} line 3:" in result.stderr, result.stderr
        path.write_text(text.replace(f"note{separator}still line three\n", ""), "utf-8")
        result = invoke("subscribers", "import", str(path))
        assert f"{path} line 4:" in result.stderr, result.stderr


def test_recipient_in_settings_and_subscriber_are_one_person(
        env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        smtp_servers: Start) -> None:
    server = smtp_servers()
    for key, value in server.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("DIGEST_RECIPIENTS", "Ann@Example.org, x@Straße.de")
    assert invoke("subscribers", "add", "ann@example.org").exit_code == 0
    result = invoke("send")
    assert result.exit_code == 0, result.output
    assert sorted(r.rcpt_to for r in server.received) == ["ann@example.org",
                                                          "x@xn--strae-oqa.de"]
    store = Store.open(env["DATABASE_URL"], tmp_path)
    try:
        assert sorted(s.address for s in list_subscribers(store)) == ["ann@example.org",
                                                                     "x@xn--strae-oqa.de"]
    finally:
        store.close()
