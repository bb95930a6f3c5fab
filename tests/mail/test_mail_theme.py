"""The mail HTML holds in Outlook (table layout) and honours dark mode.

Outlook's Word engine ignores max-width on a div, so the page is a table
600 pixels wide (width attribute) inside an Outlook-only "ghost" table, and
images carry a width attribute as well as a max-width style.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path

import pytest

from digest.mail.render import DigestContent, DigestItem, render_digest
from digest.mail.welcome import welcome_message
from digest.store.database import Store
from tests.conftest import make_settings
from tests.fixtures_mail import NOW, add_articles, sample_articles


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.comments: list[str] = []
        self.stack: list[str] = []
        self.style = ""
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}))
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.style += data

    def handle_comment(self, data: str) -> None:
        self.comments.append(data)


def parsed(html: str) -> _Elements:
    parser = _Elements()
    parser.feed(html)
    return parser


def digest_html(tmp_path: Path) -> str:
    settings = make_settings(tmp_path)
    items = (DigestItem("a", "With a picture", "Summary.", "Ann", NOW,
                        image="articles/a/photo.jpg"),
             DigestItem("b", "Without", "", "", NOW - timedelta(hours=1)))
    return render_digest(settings, DigestContent(3, NOW, items)).html


def welcome_html(tmp_path: Path) -> str:
    settings = make_settings(tmp_path)
    store = Store.open(settings.database_url, tmp_path)
    try:
        add_articles(store, *sample_articles(2))
        message = welcome_message(settings, store, "new@example.org", NOW)
    finally:
        store.close()
    mail = message_from_bytes(message.data, policy=policy.default)
    assert isinstance(mail, EmailMessage)
    part = mail.get_body(("html",))
    assert part is not None
    return str(part.get_content())


@pytest.mark.parametrize("make", [digest_html, welcome_html], ids=["digest", "welcome"])
def test_table_layout_that_outlook_keeps(tmp_path: Path, make: Callable[[Path], str]) -> None:
    html = parsed(make(tmp_path))
    pages = [a for tag, a in html.elements if "page" in a.get("class", "").split()]
    assert len(pages) == 1
    assert pages[0] == {**pages[0], "width": "600", "align": "center", "role": "presentation"}
    assert "max-width: 600px" in pages[0]["style"]
    assert [tag for tag, a in html.elements if a is pages[0]] == ["table"]
    # No div sized by max-width (the preheader's max-width:0 hides it, it lays nothing out).
    for tag, attributes in html.elements:
        style = attributes.get("style", "").replace(" ", "")
        if tag == "div" and "max-width:" in style:
            assert "max-width:0" in style and "display:none" in style
    ghost = [c for c in html.comments if c.startswith("[if mso]><table")]
    assert len(ghost) == 1 and 'width="600"' in ghost[0]


@pytest.mark.parametrize("make", [digest_html, welcome_html], ids=["digest", "welcome"])
def test_light_and_dark(tmp_path: Path, make: Callable[[Path], str]) -> None:
    html = parsed(make(tmp_path))
    metas = {a.get("name"): a.get("content") for tag, a in html.elements if tag == "meta"}
    assert metas["color-scheme"] == "light dark"
    root = next(a for tag, a in html.elements if tag == "html")
    assert "color-scheme: light dark" in root["style"]
    assert "@media (prefers-color-scheme: dark)" in html.style
    dark = html.style.split("@media (prefers-color-scheme: dark)", 1)[1]
    assert "background: #161618 !important" in dark  # beats the inlined light colours


def test_digest_images_have_width_limits(tmp_path: Path) -> None:
    html = parsed(digest_html(tmp_path))
    images = [a for tag, a in html.elements if tag == "img"]
    assert [a["src"] for a in images] == ["https://news.example.org/articles/a/photo.jpg"]
    assert int(images[0]["width"]) <= 600  # Outlook takes the attribute
    assert "max-width: 552px" in images[0]["style"] and "height: auto" in images[0]["style"]
