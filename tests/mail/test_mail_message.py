"""Rendering and building the digest mail: golden files, headers as sent, encodings.

Regenerate the golden files with
``DIGEST_REGEN_GOLDEN=1 python -m pytest tests/test_mail_message.py``.
"""


from __future__ import annotations

import os
import re
from datetime import timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from digest.errors import TemplateError
from digest.mail.message import MessageFactory, Personal, list_unsubscribe, message_id
from digest.mail.render import DigestContent, DigestItem, render_digest
from digest.settings import Settings
from tests.conftest import make_settings
from tests.fixtures_mail import NOW

GOLDEN = Path(__file__).parent.parent / "golden"
REGEN = os.environ.get("DIGEST_REGEN_GOLDEN") == "1"
UNSUB = "https://news.example.org/unsubscribe?token=" + "T" * 40 + "." + "k" * 6 + "." + \
    "S" * 43


def content(count: int = 2) -> DigestContent:
    items = [
        DigestItem("zoning-vote", "Council approves the new zoning plan",
                   "The council voted 7-2 on Tuesday.\nResidents will see changes in spring.",
                   "Ann Author", NOW - timedelta(hours=2)),
        DigestItem("cafe", "Café Ünïcode opens on Main Street <b>tonight</b> & more",
                   "A summary with <html> & \"quotes\".", "Jörg Ümlaut", NOW - timedelta(hours=5)),
        DigestItem("third", "Third story", "", "", NOW - timedelta(days=1)),
    ]
    return DigestContent(7, NOW, tuple(items[:count]))


def personal(address: str = "reader@example.org", name: str | None = None) -> Personal:
    return Personal(address, name, message_id("ed1234", address, "example.org"), UNSUB, NOW)


def build(settings: Settings, person: Personal | None = None,
          digest: DigestContent | None = None) -> tuple[bytes, EmailMessage]:
    factory = MessageFactory(settings, render_digest(settings, digest or content()), "ed1234", 7)
    data = factory.build(person or personal()).data
    parsed = message_from_bytes(data, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return data, parsed


def settings_for(tmp_path: Path, **overrides: str) -> Settings:
    values = {"UNSUBSCRIBE_MAILTO": "unsubscribe@example.org"}
    values.update(overrides)
    return make_settings(tmp_path, **values)


def blank_volatile(raw: str) -> str:
    raw = re.sub(r"(?m)^(Date|Message-ID): .*$", r"\1: <blanked>", raw)
    return raw


def check_golden(name: str, text: str) -> None:
    text = text.replace("\r\n", "\n")
    path = GOLDEN / name
    if REGEN or not path.exists():
        if not REGEN:
            pytest.fail(f"{path} is missing; run with DIGEST_REGEN_GOLDEN=1 to create it")
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8", newline="\n")
    assert text == path.read_text(encoding="utf-8"), f"{name} differs from the golden file"


def test_golden_parts(tmp_path: Path) -> None:
    _, parsed = build(settings_for(tmp_path))
    text = parsed.get_body(("plain",))
    html = parsed.get_body(("html",))
    assert text is not None and html is not None
    check_golden("digest.txt", text.get_content())
    check_golden("digest.html", html.get_content())


def test_golden_raw_headers(tmp_path: Path) -> None:
    data, _ = build(settings_for(tmp_path))
    head = data.split(b"\r\n\r\n", 1)[0].decode("ascii")
    check_golden("digest.headers", blank_volatile(head.replace("\r\n", "\n")) + "\n")


def test_structure_and_headers(tmp_path: Path) -> None:
    data, parsed = build(settings_for(tmp_path))
    assert parsed.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in parsed.iter_parts()] == ["text/plain", "text/html"]
    assert parsed["To"] == "reader@example.org"
    assert parsed["From"] == "Example News <news@example.org>"
    assert parsed["Subject"] == "Example News: 2 new articles"
    assert parsed["Message-ID"] == message_id("ed1234", "reader@example.org", "example.org")
    assert parsed["List-Id"] == "Example News <digest.news.example.org>"
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert parsed["Date"] == "Mon, 06 May 2024 07:00:00 +0000"
    assert b"\r\n" in data and b"\n" not in data.replace(b"\r\n", b"")
    assert max(len(line) for line in data.split(b"\r\n")) <= 998
    # Body lines (quoted-printable) stay within 76 characters.
    body = data.split(b"\r\n\r\n", 1)[1]
    assert max(len(line) for line in body.split(b"\r\n")) <= 76


def test_list_unsubscribe_raw_header_is_never_encoded(tmp_path: Path) -> None:
    data, _ = build(settings_for(tmp_path))
    head = data.split(b"\r\n\r\n", 1)[0].decode("ascii")
    raw = re.search(r"^List-Unsubscribe: ([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)", head,
                    re.MULTILINE)
    assert raw is not None
    assert "=?" not in raw.group(1)
    assert raw.group(1) == f"<{UNSUB}>,\r\n <mailto:unsubscribe@example.org?subject=unsubscribe>"
    # Unfolded, both URIs are whole.
    unfolded = re.sub(r"\r\n[ \t]", " ", raw.group(1))
    assert re.findall(r"<([^>]+)>", unfolded) == [
        UNSUB, "mailto:unsubscribe@example.org?subject=unsubscribe"]
    assert "=?" not in head.split("List-Unsubscribe-Post")[0].split("List-Id")[1]


def test_without_mailto(tmp_path: Path) -> None:
    _, parsed = build(make_settings(tmp_path))
    assert parsed["List-Unsubscribe"] == f"<{UNSUB}>"
    assert list_unsubscribe("https://x.example/u", None) == "<https://x.example/u>"


def test_non_ascii_names_and_subject(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, SITE_TITLE="Städtische Nachrichten · Ünïcode",
                            DIGEST_FROM="Rédaction Ünïcode <news@example.org>",
                            DIGEST_SUBJECT="{site} – {count} neue Artikel am {date}")
    data, parsed = build(settings, personal("leser@example.org", "Jürgen \"JJ\" Müller"))
    head = data.split(b"\r\n\r\n", 1)[0]
    head.decode("ascii")  # every header is 7-bit
    assert parsed["Subject"] == "Städtische Nachrichten · Ünïcode – 2 neue Artikel am 2024-05-06"
    assert parsed["From"].addresses[0].display_name == "Rédaction Ünïcode"
    assert parsed["To"].addresses[0].display_name == 'Jürgen "JJ" Müller'
    assert parsed["To"].addresses[0].addr_spec == "leser@example.org"
    assert parsed["List-Id"] == "Städtische Nachrichten · Ünïcode <digest.news.example.org>"
    text = parsed.get_body(("plain",))
    assert text is not None and "Café Ünïcode" in text.get_content()


def test_safe_ascii_name_is_written_plainly(tmp_path: Path) -> None:
    _, parsed = build(settings_for(tmp_path), personal("ann@example.org", "Ann Smith"))
    assert parsed["To"] == "Ann Smith <ann@example.org>"


@pytest.mark.parametrize("title", ["Evil\r\nBcc: victim@example.org", "Evil\nBcc: x@y.org",
                                   "Evil\rBcc: x@y.org", "NUL\x00byte\x1b[31m", "Line\u2028sep"])
def test_control_characters_cannot_inject_headers(tmp_path: Path, title: str) -> None:
    settings = settings_for(tmp_path, SITE_TITLE=title)
    digest = DigestContent(1, NOW, (DigestItem("x", title, title, title, NOW),))
    data, parsed = build(settings, personal("n@example.org", title), digest)
    assert parsed["Bcc"] is None
    names = [name.lower() for name in parsed]
    assert names.count("to") == 1 and "bcc" not in names
    head = data.split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n"):
        assert line[:1] in (b" ", b"\t") or re.match(rb"^[A-Za-z-]+: ", line), line
    assert not re.search(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", data)


def test_html_is_escaped_inlined_and_linked(tmp_path: Path) -> None:
    _, parsed = build(settings_for(tmp_path))
    part = parsed.get_body(("html",))
    assert part is not None
    html = part.get_content()
    assert "<b>tonight</b>" not in html and "&lt;b&gt;tonight&lt;/b&gt;" in html
    assert "A summary with &lt;html&gt; &amp; " in html
    assert '<a href="https://news.example.org/articles/zoning-vote.html"' in html
    assert "<style>" not in html.split("@media")[0] or "style=" in html
    assert 'class="headline" style="' in html  # CSS inlined
    assert 'class="preheader" style="display:none' in html
    assert "Council approves the new zoning plan · Café" in html  # preheader text
    assert f'href="{UNSUB}"' in html
    assert "reader@example.org" in html


def test_personal_values_differ_per_recipient(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    factory = MessageFactory(settings, render_digest(settings, content()), "ed1234")
    a = factory.build(personal("a@example.org")).data
    b = factory.build(personal("b@example.org")).data
    assert a != b
    parsed = message_from_bytes(b, policy=policy.default)
    assert parsed["To"] == "b@example.org"
    text = parsed.get_body(("plain",))
    assert text is not None
    assert "because b@example.org is subscribed" in text.get_content()
    assert "a@example.org" not in b.decode("ascii")


def test_fast_path_equals_the_email_package(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, SITE_TITLE="Ünï News")
    factory = MessageFactory(settings, render_digest(settings, content(3)), "ed1234")
    for person in (personal(), personal("x@example.org", "Zoë Ö"), personal("y@example.org",
                                                                            "Plain Name")):
        fast = message_from_bytes(factory.build(person).data, policy=policy.default)
        slow_bytes = factory.email_message(person).as_bytes()
        slow = message_from_bytes(slow_bytes, policy=policy.default)
        assert sorted((k, str(v)) for k, v in fast.items()) == \
            sorted((k, str(v)) for k, v in slow.items())
        for kind in ("plain", "html"):
            a, b = fast.get_body((kind,)), slow.get_body((kind,))
            assert a is not None and b is not None
            assert a.get_content() == b.get_content()


def test_user_template_overrides_and_errors_name_the_line(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "digest.txt").write_text("{{ count }} items for {{ recipient }}\n", "utf-8")
    _, parsed = build(settings_for(tmp_path))
    text = parsed.get_body(("plain",))
    assert text is not None
    assert text.get_content().replace("\r\n", "\n") == "2 items for reader@example.org\n"
    (templates / "digest.txt").write_text("line one\n{{ nope.title }}\n", "utf-8")
    with pytest.raises(TemplateError, match=r"digest\.txt, line 2: 'nope' is undefined"):
        build(settings_for(tmp_path))
    (templates / "digest.txt").write_text("ok\n{% for x in %}\n", "utf-8")
    with pytest.raises(TemplateError, match=r"digest\.txt, line 2"):
        build(settings_for(tmp_path))


def test_max_items_lists_the_newest_and_counts_the_rest(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, DIGEST_MAX_ITEMS="2")
    # Out of order on purpose: the newest two are listed whatever the order given.
    items = content(3).items
    rendered = render_digest(settings, DigestContent(7, NOW, (items[2], items[1], items[0])))
    assert "Example News: 3 new articles" in rendered.text  # the whole edition is counted
    assert "Council approves" in rendered.text and "Café" in rendered.text
    assert "Third story" not in rendered.text and "Third story" not in rendered.html
    assert rendered.text.index("Council approves") < rendered.text.index("Café")
    assert "and 1 more on https://news.example.org/\n" in rendered.text
    assert 'and 1 more on <a href="https://news.example.org/"' in rendered.html
    assert rendered.subject == "Example News: 3 new articles"


def test_no_more_line_when_everything_is_listed(tmp_path: Path) -> None:
    rendered = render_digest(settings_for(tmp_path, DIGEST_MAX_ITEMS="3"), content(3))
    assert "more on" not in rendered.text and "more on" not in rendered.html


def test_one_article_is_one_new_article_in_the_subject_and_body(tmp_path: Path) -> None:
    rendered = render_digest(settings_for(tmp_path), content(1))
    assert rendered.subject == "Example News: 1 new article"
    assert "1 new articles" not in rendered.text + rendered.html
    custom = settings_for(tmp_path, DIGEST_SUBJECT="{count} for {site}: {articles}")
    assert render_digest(custom, content(2)).subject == "2 for Example News: 2 new articles"


def test_text_part_never_breaks_a_web_address_in_a_summary(tmp_path: Path) -> None:
    hyphens = "https://example.org/2026/12/the-council-approves-the-new-zoning-plan-for-main-street"
    long_word = "https://example.org/files/" + "a" * 100
    summary = f"The council voted on Tuesday; details at {hyphens} and the minutes at " \
              f"{long_word} for anyone who wants to read them, well-known or not."
    digest = DigestContent(1, NOW, (DigestItem("vote", "Vote", summary, "", NOW),))
    _, parsed = build(settings_for(tmp_path), digest=digest)
    text = parsed.get_body(("plain",))
    assert text is not None
    lines = text.get_content().splitlines()
    assert hyphens in lines and long_word in lines  # each whole, alone on its line
    words = [line for line in lines if "Tuesday" in line or "anyone" in line]
    assert len(words) == 2 and all(len(line) <= 72 for line in words)  # words still wrap


@pytest.mark.parametrize("name", [
    "Smith, John (Head of Marketing, Northwind Traders International Holdings Limited)",
    "=?utf-8?b?SGk=?=", "Ann =?utf-8?q?B=C3=B6b?= Smith"])
def test_a_subscriber_name_is_one_recipient_shown_as_written(tmp_path: Path, name: str) -> None:
    # Folding split the first name's quotes: To read as "Smith" and "John <...>";
    # the others showed as "Hi" and "Ann Böb Smith".
    _, parsed = build(settings_for(tmp_path), personal("ann@example.org", name))
    (to,) = parsed["To"].addresses
    assert (to.display_name, to.addr_spec) == (name, "ann@example.org")
    assert not parsed["To"].defects
