"""What strangers write reaches the digest message: article titles, summaries and authors
(anyone who writes an article), a subscriber's name (an imported list). Whatever it is,
the message as sent parses without defects, has each header once, keeps every line
within 998 octets, and shows the text as written (escaped in HTML) or leaves a name out.
"""

from __future__ import annotations

import html
import re
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digest.mail.message import MessageFactory, Personal, message_id
from digest.mail.render import DigestContent, DigestItem, one_line, render_digest
from digest.settings import Settings
from tests.conftest import make_settings
from tests.fixtures_mail import NOW

ADDRESS = "ann@example.org"
UNSUB = "https://news.example.org/unsubscribe?token=ann.x.y"
MANAGE = "https://news.example.org/manage?token=ann.x.z"

# Text with the pieces that matter to mail: encoded-word marks, quotes, specials, HTML,
# line breaks, non-ASCII and long words, as well as anything at all.
_PIECES = st.sampled_from(["=?", "?=", "utf-8", "?b?", "?q?", "SGk=", " ", "Ann", "é", "🎉",
                           '"', "\\", ",", ";", ":", "<", ">", "@", "&", "<script>", "\r\n",
                           "\n", "\t", "Bcc: x@y.org", "x" * 90, "https://e.org/a-b-c"])
_ENCODED_WORD = st.builds("{}=?{}?{}?{}?={}".format, st.sampled_from(["", "Ann ", '"']),
                          st.sampled_from(["utf-8", "iso-8859-1", "x"]),
                          st.sampled_from(["b", "q", "Q"]),
                          st.sampled_from(["SGk=", "Bob_=3Cceo@bank.example=3E", "", "_"]),
                          st.sampled_from(["", " Smith", '"']))
HOSTILE = st.one_of(st.text(max_size=150), st.lists(_PIECES, max_size=25).map("".join),
                    _ENCODED_WORD)


def parsed_message(settings: Settings, digest: DigestContent, name: str | None
                   ) -> tuple[bytes, EmailMessage]:
    factory = MessageFactory(settings, render_digest(settings, digest), "ed1234", 7)
    person = Personal(ADDRESS, name, message_id("ed1234", ADDRESS, "example.org"), UNSUB, NOW,
                      MANAGE)
    data = factory.build(person).data
    message = message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return data, message


def check_sound(data: bytes, message: EmailMessage) -> None:
    assert all(len(line) <= 998 for line in data.split(b"\r\n"))
    assert not re.search(rb"[^\t\r\n\x20-\x7e]", data)  # 7-bit: headers encoded, bodies QP
    assert not message.defects
    names = [key.lower() for key in message]
    assert len(names) == len(set(names)) and "bcc" not in names
    (to,) = message["To"].addresses
    assert to.addr_spec == ADDRESS


@given(HOSTILE)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_a_subscriber_name_is_shown_as_written_or_left_out(tmp_path: Path, name: str) -> None:
    data, message = parsed_message(make_settings(tmp_path), DigestContent(7, NOW, ()), name)
    check_sound(data, message)
    assert message["To"].addresses[0].display_name in (one_line(name), "")


@given(HOSTILE, HOSTILE, HOSTILE)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_an_article_reaches_the_message_as_text_never_as_markup_or_headers(
        tmp_path: Path, title: str, summary: str, author: str) -> None:
    item = DigestItem("story", title, summary, author, NOW)
    data, message = parsed_message(make_settings(tmp_path), DigestContent(7, NOW, (item,)), None)
    check_sound(data, message)
    text_part, html_part = message.get_body(("plain",)), message.get_body(("html",))
    assert text_part is not None and html_part is not None
    text, body = text_part.get_content(), html_part.get_content()
    if one_line(title):
        assert one_line(title) in text.splitlines()
        assert html.escape(one_line(title), quote=False) in body
    assert "<script>" not in body
    for part in (text, body):  # this recipient's own links, whole
        assert UNSUB in part and MANAGE in part and ADDRESS in part
