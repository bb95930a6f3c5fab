"""Reading article files: the plain-text sample format, Markdown, and bad input."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from digest.errors import ArticleError
from digest.model import SourceFile, entry_id
from digest.publish.reading import first_sentence, headline, read_article, shorten
from tests.conftest import SAMPLE

UTC_ZONE = ZoneInfo("UTC")


def read(key: str, data: bytes | str, zone: ZoneInfo = UTC_ZONE, limit: int = 1 << 20):
    raw = data.encode() if isinstance(data, str) else data
    return read_article(SourceFile(key, "/nonexistent/" + key, len(raw), 0), raw, zone, limit)


def test_sample_article_headline_summary_date_and_headings() -> None:
    article = read("000_b4d3f6eb2287ccfb.txt", SAMPLE.read_bytes())
    assert article.published == datetime(2024, 3, 20, tzinfo=UTC)
    # The headline is the first sentence, cut at a word boundary.
    assert article.title.startswith("In Los Angeles, Immigration and Customs Enforcement (ICE)")
    assert article.title.endswith("…") and len(article.title) <= 100
    assert not article.title[:-1].endswith(" ")
    # The summary is the lead paragraph (shortened), not the heading that follows.
    assert article.summary.startswith("In Los Angeles")
    assert "Challenges Amid" not in article.summary
    assert "<h2>Challenges Amid Sanctuary Policies</h2>" in article.body_html
    assert "<h2>Impact on Public Safety</h2>" in article.body_html
    assert "<h2>Broader Implications</h2>" in article.body_html
    assert article.body_html.count("<p>") == 4
    assert article.slug == "000_b4d3f6eb2287ccfb"
    assert article.id == entry_id("000_b4d3f6eb2287ccfb.txt", None)


def test_short_first_sentence_is_the_whole_headline() -> None:
    article = read("a.txt", "date 2024-01-02 Rain is coming. Bring an umbrella to work.\n")
    assert article.title == "Rain is coming"
    assert article.summary == "Rain is coming. Bring an umbrella to work."


def test_headline_does_not_stop_at_abbreviations() -> None:
    assert first_sentence("The U.S. Senate met Mr. Smith today. Then it rained.") == \
        "The U.S. Senate met Mr. Smith today."
    assert headline("Dr. Who arrived. Later.") == "Dr. Who arrived"


def test_shorten_cuts_at_word_boundary() -> None:
    text = "alpha beta gamma delta epsilon"
    assert shorten(text, 15) == "alpha beta…"
    assert shorten(text, 100) == text


def test_header_lines_override_derived_values() -> None:
    article = read("b.txt", "title My Title\nauthor Jane Roe\ntags one, two\nid post-1\n"
                   "updated 2024-02-01\ndate 2024-01-02 Lead text here. More.\n")
    assert article.title == "My Title"
    assert article.author == "Jane Roe"
    assert article.tags == ("one", "two")
    assert article.id == entry_id("b.txt", "post-1")
    assert article.updated == datetime(2024, 2, 1, tzinfo=UTC)


def test_leading_blank_space_and_date_alone_on_its_line() -> None:
    article = read("c.txt", "\n\n  date 2024-01-02\n\nThe lead paragraph. Second sentence.\n")
    assert article.title == "The lead paragraph"


def test_naive_dates_take_the_site_time_zone() -> None:
    article = read("d.txt", "date 2024-06-01 Hello there.", zone=ZoneInfo("Europe/Berlin"))
    assert article.published.utcoffset() is not None
    assert article.published.isoformat() == "2024-06-01T00:00:00+02:00"


def test_plain_text_is_escaped_not_interpreted() -> None:
    article = read("e.txt", "date 2024-01-02 Use <script>alert(1)</script> & co.\n")
    assert "<script>" not in article.body_html
    assert "&lt;script&gt;" in article.body_html


def test_markdown_front_matter() -> None:
    article = read("posts/hello.md", "---\ntitle: Hello\ndate: 2024-05-01 10:00\n"
                   "tags: [a, b]\nauthor: Ann\n---\nFirst *para*.\n\n## Sub\n\nMore [x](img.png)\n")
    assert article.title == "Hello"
    assert article.published == datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    assert article.tags == ("a", "b")
    assert article.summary == "First para."
    assert article.slug == "posts/hello"
    assert "<em>para</em>" in article.body_html
    assert not article.draft


def test_markdown_html_is_sanitized() -> None:
    article = read("x.md", "---\ntitle: T\ndate: 2024-05-01\n---\nHi <script>alert(1)</script>"
                   '<img src="a.png" onerror="evil()"> [c](javascript:alert(1))\n')
    assert "<script" not in article.body_html
    assert "onerror" not in article.body_html
    assert 'href="javascript' not in article.body_html


def test_markdown_title_from_first_heading_when_missing() -> None:
    article = read("y.md", "---\ndate: 2024-05-01\n---\n# The Heading\n\nText.\n")
    assert article.title == "The Heading"


def test_draft_flag() -> None:
    assert read("z.md", "---\ntitle: T\ndate: 2024-05-01\ndraft: true\n---\nText\n").draft


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_utf16_with_its_byte_order_mark_reads_as_utf8(encoding: str) -> None:
    """Windows editors save "Unicode" as UTF-16 with a byte order mark: the same article."""
    text = "---\ntitle: Café ☕\ndate: 2024-05-01\n---\nBody text.\n"
    mark = "\ufeff" if encoding != "utf-16" else ""  # "utf-16" writes its own
    article = read("cafe.md", (mark + text).encode(encoding))
    same = read("cafe.md", text.encode("utf-8"))
    assert (article.title, article.body_html) == ("Café ☕", same.body_html)


@pytest.mark.parametrize(("data", "reason"), [
    (b"", "empty"),
    (b"   \n\n", "empty"),
    (b"date 2024-01-01 ok\x00\x01binary", "binary"),
    (b"date 2024-01-01 caf\xe9 au lait", "invalid UTF-8"),
    ("date 2024-01-01 odd".encode("utf-16") + b"\x00", "invalid UTF-16"),  # a byte short
    (b"Just some text without a date.\n", "no 'date"),
    (b"date 2024-02-30 Impossible day.\n", "not a real date"),
    (b"date yesterday Something.\n", "does not start with a date"),
    (b"date 2024-01-01\n\n\n", "no text"),
])
def test_bad_plain_text_input_names_the_problem(data: bytes, reason: str) -> None:
    with pytest.raises(ArticleError) as caught:
        read("bad.txt", data)
    assert caught.value.path == "bad.txt"
    assert reason in caught.value.message
    assert caught.value.hint


@pytest.mark.parametrize(("text", "reason"), [
    ("no front matter\n", "no YAML front matter"),
    ("---\ntitle: [unclosed\n---\nText\n", "not valid YAML"),
    ("---\ntitle: T\n---\nText\n", "no date"),
    ("---\n- a\n- b\n---\nText\n", "not a set of"),
    ("---\ntitle: T\ndate: 2024-13-01\n---\nText\n", "not a real date"),
    ("---\ntitle: T\ndate: 2024-01-01\ndraft: maybe\n---\nText\n", "neither true nor false"),
])
def test_bad_markdown_input_names_the_problem(text: str, reason: str) -> None:
    with pytest.raises(ArticleError) as caught:
        read("bad.md", text)
    assert reason in caught.value.message


def test_size_limit() -> None:
    with pytest.raises(ArticleError, match="over the limit"):
        read("big.txt", "date 2024-01-01 " + "x" * 500, limit=100)


def test_xml_illegal_characters_are_removed_with_a_warning() -> None:
    article = read("ctl.txt", "date 2024-01-01 Form\x0cfeed and \x1bescape here.\n")
    assert "\x0c" not in article.body_html and "\x1b" not in article.body_html
    assert article.warnings and "U+000C" in article.warnings[0]


def test_slug_cannot_escape_the_output_folder() -> None:
    with pytest.raises(ArticleError, match="can't be used in a URL"):
        read("s.md", "---\ntitle: T\ndate: 2024-01-01\nslug: ../../etc/passwd\n---\nText\n")


def test_entry_id_depends_only_on_path_or_explicit_id(tmp_path: Path) -> None:
    one = read("p.txt", "date 2024-01-01 First text.")
    two = read("p.txt", "title Other\ndate 2025-01-01 Different text entirely.")
    assert one.id == two.id
    assert read("q.txt", "date 2024-01-01 First text.").id != one.id
    assert read("r.txt", "id tag:example.org,2024:r\ndate 2024-01-01 X.").id == \
        "tag:example.org,2024:r"
