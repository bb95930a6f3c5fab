"""The per-article feed check builds the Atom entry only: it must refuse whatever the
RSS item or the JSON Feed record of the same article would fail on."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from feedgen.entry import FeedEntry
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from digest.errors import ArticleError
from digest.model import Enclosure, Entry
from digest.publish import feeds

META = feeds.FeedMeta("urn:x", "T", "", "A", "en", "https://e.org/", "https://e.org/f.atom",
                      "https://e.org/f.rss", "https://e.org/f.json")
MOMENT = datetime(2024, 1, 1, tzinfo=UTC)
# Text with the characters that break XML or UTF-8 now and then (controls, surrogates,
# U+FFFE), and the markup-ish ones that must not.
_TEXT = st.lists(st.one_of(st.characters(codec="utf-8"), st.sampled_from(
    ["\x00", "\x01", "\x1f", "\ud800", "\udfff", "\ufffe", "\uffff", "]]>", "<", "&", "\t"])),
    max_size=12).map("".join)
# The first image (in the JSON record only) is a slug-checked ASCII path or an img src of
# the sanitized body, from which XML-illegal characters were removed.
_IMAGE = st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")), max_size=12)


def _builds_everywhere(item: feeds.FeedItem) -> bool:
    """What check_item did before: the Atom entry, the RSS item and the JSON record."""
    try:
        fe = FeedEntry()
        feeds._fill_entry(fe, item, META)
        fe.guid(item.entry.id, permalink=False)
        fe.atom_entry()
        fe.rss_entry()
        json.dumps(feeds._json_record(item), ensure_ascii=False).encode("utf-8")
    except (ValueError, TypeError, etree.LxmlError):
        return False
    return True


def _passes_check(item: feeds.FeedItem) -> bool:
    try:
        feeds.check_item(META, item)
    except ArticleError:
        return False
    return True


@settings(max_examples=300, deadline=None)
@given(title=_TEXT.filter(bool), summary=_TEXT, author=_TEXT, tags=st.lists(_TEXT, max_size=3),
       content=st.none() | _TEXT, entry_id=_TEXT.filter(bool), image=_IMAGE,
       enclosure=st.none() | st.tuples(_TEXT, _TEXT))
def test_the_atom_entry_refuses_what_any_feed_would(
        title: str, summary: str, author: str, tags: list[str], content: str | None,
        entry_id: str, image: str, enclosure: tuple[str, str] | None) -> None:
    entry = Entry("a.md", entry_id, "a", "https://e.org/a.html", title, MOMENT, MOMENT, author,
                  tuple(tags), summary, image="https://e.org/" + image if image else "",
                  enclosure=None if enclosure is None else Enclosure(
                      "https://e.org/" + enclosure[0], 12, enclosure[1]))
    item = feeds.FeedItem(entry, content)
    if _passes_check(item):
        assert _builds_everywhere(item)
    # and the check refuses nothing the three feeds accept (no article lost for nothing)
    if _builds_everywhere(item):
        assert _passes_check(item)


@pytest.mark.parametrize("bad", ["\x01", "\ud800", "\ufffe"])
@pytest.mark.parametrize("field", ["title", "summary", "author", "id", "content", "tag"])
def test_a_bad_character_in_any_field_is_refused(field: str, bad: str) -> None:
    values = {"title": "T", "summary": "S", "author": "A", "id": "urn:1", "content": "<p>x</p>",
              "tag": "t"}
    values[field] += bad
    entry = Entry("a.md", values["id"], "a", "https://e.org/a.html", values["title"], MOMENT,
                  MOMENT, values["author"], (values["tag"],), values["summary"])
    with pytest.raises(ArticleError):
        feeds.check_item(META, feeds.FeedItem(entry, values["content"]))
