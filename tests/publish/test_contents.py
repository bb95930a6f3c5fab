"""The feed contents pack: what a publish keeps so the next one need not read every file.

It is only a cache: what it gives must be exactly the feeds' content, a damaged
entry is never used (its checksum fails), and a damaged pack is simply empty.
"""

from __future__ import annotations

import json
from pathlib import Path

from digest.model import Entry
from digest.publish.contents import PACK, Contents
from digest.publish.output import generations_dir
from digest.publish.records import entry_of
from digest.publish.sanitize import absolutize
from digest.store.database import Store
from tests.publish.test_assets import md, run


def published(site: Path) -> tuple[Path, Contents, list[Entry], dict[str, str]]:
    """Publish three tagged articles; a Contents that can use only the pack (no file is
    read again); the entries; and the content each has in feed.json."""
    for n in range(3):
        md(site, f"a{n}.md", f"title: Article {n}\ntags: [x]\n",
           f"Text {n} with [a link](other.html) and *emphasis*.")
    _, settings = run(site)
    store = Store.open(settings.database_url, site)
    try:
        records = store.load_articles()
    finally:
        store.close()
    contents = Contents(settings.output_dir, records, {}, lambda key: None)
    entries = [entry_of(r, settings) for r in records.values()]
    feed = json.loads((settings.output_dir / "feed.json").read_text())
    return generations_dir(settings.output_dir) / PACK, contents, entries, {
        item["id"]: item["content_html"] for item in feed["items"]}


def test_the_pack_gives_each_entry_exactly_its_feed_content(site: Path) -> None:
    pack, contents, entries, expected = published(site)
    assert pack.is_file() and len(expected) == 3
    for entry in entries:
        assert contents(entry, absolutize) == expected[entry.id]
        assert "https://example.org/news/articles/other.html" in expected[entry.id]


def test_a_damaged_entry_is_not_used(site: Path) -> None:
    pack, _, entries, expected = published(site)
    data = bytearray(pack.read_bytes())
    at = data.index(b"Text 1")
    data[at:at + 6] = b"Text 9"  # same length: only the checksum can tell
    pack.write_bytes(bytes(data))
    _, settings = run(site)  # nothing changed: the output stays as it is
    store = Store.open(settings.database_url, site)
    try:
        contents = Contents(settings.output_dir, store.load_articles(), {}, lambda key: None)
    finally:
        store.close()
    got = {e.id: contents(e, absolutize) for e in entries}
    assert sum(value is None for value in got.values()) == 1
    assert all(value == expected[key] for key, value in got.items() if value is not None)
    assert not any("Text 9" in (value or "") for value in got.values())


def test_a_broken_pack_is_an_empty_one_and_the_next_publish_writes_it_again(site: Path) -> None:
    pack, _, entries, expected = published(site)
    for damage in (b"", b"digest-contents 2\n", b"not a pack at all", pack.read_bytes()[:-3]):
        pack.write_bytes(damage)
        _, settings = run(site)
        store = Store.open(settings.database_url, site)
        try:
            records = store.load_articles()
        finally:
            store.close()
        contents = Contents(settings.output_dir, records, {}, lambda key: None)
        assert all(contents(e, absolutize) is None for e in entries)
    md(site, "a0.md", "title: Article 0\ntags: [x]\n", "Text 0, edited.")
    _, settings = run(site)  # a publish reads the changed file, the others again
    feed = json.loads((settings.output_dir / "feed.json").read_text())
    assert {item["id"]: item["content_html"] for item in feed["items"]
            if "edited" not in item["content_html"]} == {
        key: value for key, value in expected.items() if "Text 0" not in value}
    store = Store.open(settings.database_url, site)
    try:
        contents = Contents(settings.output_dir, store.load_articles(), {}, lambda key: None)
    finally:
        store.close()
    assert all(contents(e, absolutize) is not None for e in entries)
