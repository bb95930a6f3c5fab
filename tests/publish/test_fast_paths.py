"""Property tests: each fast path of reading an article agrees with the plain way it replaces."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from digest import model, templates
from digest.errors import ArticleError
from digest.model import SourceFile
from digest.publish import assets, feeds, sanitize
from digest.publish.formats import markdown
from digest.publish.formats import text as plain
from digest.publish.formats.fields import Fields
from digest.publish.reading import read_article

PROPERTIES = settings(max_examples=500, deadline=None)
# Any code point, lone surrogates too, and often the ones at the edges of what XML allows.
CHARS = st.one_of(
    st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=()),
    st.sampled_from("\x00\x01\x08\t\n\x0b\x0c\r\x0e\x1f \x7f\x85\ud7ff\ud800\udbff\udc00"
                    "\udfff\ue000\ufdd0\ufeff\ufffd\ufffe\uffff\U00010000\U0010ffff한"),
)


def _regex_has_xml_illegal(text: str) -> bool:
    return sanitize._XML_ILLEGAL.search(text) is not None


@PROPERTIES
@given(st.lists(CHARS, max_size=30).map("".join))
@example("\ud55c\ud7a3 \ud800")  # Hangul (0xED 0x95..) beside a surrogate
@example("\ud55c\ud7a3")
def test_has_xml_illegal_agrees_with_the_regex(text: str) -> None:
    assert sanitize.has_xml_illegal(text) == _regex_has_xml_illegal(text)
    encoded = text.encode("utf-8", "surrogatepass")
    assert sanitize.utf8_has_xml_illegal(encoded) == _regex_has_xml_illegal(text)
    assert sanitize.utf8_has_xml_illegal(b"\xef\xbb\xbf" + encoded) == \
        _regex_has_xml_illegal(text)  # a byte order mark changes nothing


# Markdown inline syntax, reference definitions among it, in a few paragraphs.
MD_PIECES = st.sampled_from([
    "word", " ", "\n", "\n\n", "*", "_", "**", "`", "~~", "[", "]", "(", ")", "![", "<", ">",
    "&amp;", "&#x1;", "\\", "<b>", "</b>", "<a href='x'>", "</a>", "[a]", "[a][b]", "[b]",
    "\n\n[b]: /u 'T'\n\n", "\n\n[a]: <x y>\n\n", "http://e.org", "# ", "> ", "- ", "1. ",
    "    ", "|", "---", "<!-- c -->", "é", "\u00a0",
])


@PROPERTIES
@given(st.lists(st.one_of(MD_PIECES, st.text(max_size=4)), max_size=40).map("".join))
@example("[x][r] and *y*\n\n[r]: /u\n")
@example("![alt *e*](p.png) lead")
def test_a_paragraph_renders_from_its_parsed_children_as_when_parsed_again(body: str) -> None:
    env: dict[str, object] = {}
    tokens = markdown._md.parse(body, env)
    for token in tokens:
        if token.type == "inline":
            assert markdown.inline_html(token, env) == markdown._md.renderInline(token.content)


def _parse_by_lines(key: str, text: str) -> Fields:
    """The plain-text reader as it was: every line split off first, each chunk's lines
    stripped twice (text.parse now finds the header lines one by one)."""
    lines = text.lstrip().split("\n")
    headers: dict[str, object] = {}
    lead_start: str | None = None
    index = 0
    while index < len(lines):
        match = plain._HEADER.match(lines[index].strip())
        if not match:
            break
        name, value = match.group(1), (match.group(2) or "").strip()
        index += 1
        if name == "date":
            date_match = plain._DATE_LINE.match(value)
            if not date_match:
                raise ArticleError(key, f"line {index}: 'date {value[:30]}' does not start with "
                                   "a date", "write 'date YYYY-MM-DD' followed by the lead")
            headers["date"] = date_match.group(1)
            if date_match.group(2):
                lead_start = date_match.group(2)
                break
        else:
            if not value:
                raise ArticleError(key, f"line {index}: header '{name}' has no value",
                                   f"write '{name} <value>' or remove the line")
            headers[name] = value
    if "date" not in headers:
        raise ArticleError(key, "no 'date YYYY-MM-DD' line before the text",
                           "start the file with 'date YYYY-MM-DD' and the lead paragraph")
    rest = "\n".join(lines[index:])
    if lead_start is not None:
        rest = lead_start + "\n" + rest
    blocks: list[tuple[str, str]] = []
    for chunk in re.split(r"\n[ \t]*\n", rest.strip()):
        chunk_lines = [line.strip() for line in chunk.split("\n") if line.strip()]
        if not chunk_lines:
            continue
        joined = " ".join(chunk_lines)
        heading = blocks and len(chunk_lines) == 1 and plain._is_heading(joined)
        blocks.append(("heading" if heading else "p", joined))
    if not blocks:
        raise ArticleError(key, "has a date but no text", "write at least one paragraph")
    return Fields(headers=headers, lead=blocks[0][1], body_html=sanitize.paragraphs_to_html(blocks))


TEXT_PIECES = st.sampled_from([
    "\n", "\n\n", " \n", "\n \t\n", " ", "\t", "\r", "\x1c", "\x85", "\u2028", "date ",
    "date 2024-01-02", "date 2024-01-02 ", "date 2024-01-02T10:00Z Lead.", "date x", "title ",
    "title T", "tags a, b", "author ", "id x", "Heading", "Words here.", "é", "<&>", "\n\n\n",
])


@PROPERTIES
@given(st.lists(st.one_of(TEXT_PIECES, st.text(max_size=4)), max_size=30).map("".join))
@example("title T\ndate 2024-01-02")
@example("title T\ndate 2024-01-02\n")
@example("date 2024-01-02\nLead\n\nHeading\n\nMore.")
def test_plain_text_reads_as_when_split_into_lines_first(text: str) -> None:
    def outcome(parse: Callable[[str, str], Fields]) -> Fields | str:
        try:
            return parse("a.txt", text)
        except ArticleError as exc:
            return exc.message
    assert outcome(plain.parse) == outcome(_parse_by_lines)


NESTING_PIECES = st.sampled_from([
    "<p>", "</p>", "<li>", "<div>", "</div>", "<br>", "<img/>", "<b x='>'>", "</b>", "<!-- <a> -->",
    "<a", ">", "text", "<q>", "</q>", "<P>", "</ P>", "< b>",
])


@PROPERTIES
@given(st.lists(st.one_of(NESTING_PIECES, st.text(max_size=3)), max_size=30).map("".join),
       st.integers(0, 12))
def test_bounding_nesting_skips_the_walk_only_when_it_would_drop_nothing(html: str,
                                                                      limit: int) -> None:
    assert sanitize.bound_nesting(html, limit) == sanitize._drop_deep(html, limit)


def test_a_file_is_inside_the_articles_as_when_both_paths_are_resolved(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "d").mkdir(parents=True)
    (outside / "d" / "f.png").write_bytes(b"x")
    real = tmp_path / "real"
    (real / "img" / "sub").mkdir(parents=True)
    (real / "img" / "a.png").write_bytes(b"x")
    (real / "img" / "sub" / "b.png").write_bytes(b"x")
    (real / "in-dir").symlink_to(real / "img")
    (real / "in-dir-relative").symlink_to("img/sub")
    (real / "out-dir").symlink_to(outside / "d")
    (real / "img" / "in.png").symlink_to("a.png")
    (real / "img" / "out.png").symlink_to(outside / "d" / "f.png")
    (real / "img" / "up.png").symlink_to("../../outside/d/f.png")
    (real / "img" / "loop.png").symlink_to("loop.png")
    (tmp_path / "root-link").symlink_to(real)
    paths = ["img/a.png", "img/sub/b.png", "in-dir/a.png", "in-dir/sub/b.png",
             "in-dir-relative/b.png", "out-dir/f.png", "img/in.png", "img/out.png", "img/up.png",
             "img/loop.png", "img/missing.png", "missing/a.png"]
    for root in (real, tmp_path / "root-link"):
        for path in paths:
            assert assets.inside(root, path) == assets._inside(root / path, root), (root, path)
    assert not assets.inside(real, "out-dir/f.png") and assets.inside(real, "in-dir/a.png")


@pytest.fixture(scope="module")
def articles_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("articles")
    (root / "img").mkdir()
    (root / "sub").mkdir()
    for name in ("img/a.png", "img/b c.png", "img/x&y.png", "sub/p.jpg", "ep.mp3"):
        (root / name).write_bytes(b"x")
    return root


LINKS = st.sampled_from([
    "img/a.png", "img/b%20c.png", "img/x&amp;y.png", "img/a.png?q=1&amp;r=&lt;2&gt;#f", "#top",
    "../feed.atom", "/abs.png", "https://e.org/p.png?a=1&amp;b=2", "http://[x", "http://[::1",
    "missing.png", "mailto:a@b", "javascript:x", "sub/p.jpg", "./img/a.png", "img/a.png&nbsp;",
    "a&quot;b.png", "//cdn.e.org/x.png", " img/a.png ", "\ue000", "img/a.png?&quot;&lt;&#xa0;",
    "", "img/../img/a.png", "../../x.png",
])
HTML_PIECES = st.one_of(
    LINKS.map(lambda u: f'<a href="{u}">l</a>'), LINKS.map(lambda u: f'<img src="{u}" alt="A">'),
    LINKS.map(lambda u: f"<p><img src='{u}' srcset='{u} 2x' alt='B'></p>"),
    LINKS.map(lambda u: f"[t]({u}) "), LINKS.map(lambda u: f"\n\n![P]({u})\n\n"),
    st.sampled_from([
        "<h1><div><h2>x</h2></div></h1>", "<p>a<p>b", "<b><i>x</b></i>", "<table><tr><td>a",
        "<ul><li><div><li>x</div></ul>", "<a href=x><a href=y>n</a></a>", " src=", " href=",
        "<code>src=\"x\"</code>", "\n\n", "text ", "&#x1;", "<blockquote><h3>q<h4>r", "</p>",
        "<form><p>f</form>", "é", "\ue000", "<script>x</script>",
    ]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(HTML_PIECES, max_size=12).map("".join),
       st.sampled_from(["", "slug: moved/deep/p\n", "slug: p\n", "slug: sub/q\n"]),
       st.sampled_from(["", "enclosure: ep.mp3\n", "enclosure: nope.mp3\n"]),
       st.sampled_from(["m.md", "sub/m.md"]))
@example("<h1><div><h2><a href='img/a.png'>x</a></h2></div></h1>", "slug: moved/p\n", "", "m.md")
@example('<a href="http://[x">l</a><a href="img/a.png" title="t">m</a>', "", "", "m.md")
def test_one_pass_for_the_links_gives_what_two_passes_give(
        articles_dir: Path, body: str, slug: str, enclosure: str, key: str) -> None:
    data = f"---\ndate: 2024-01-02\ntitle: T\n{slug}{enclosure}---\n{body}\n".encode()
    article = read_article(SourceFile(key, str(articles_dir / key), len(data), 0), data,
                           ZoneInfo("UTC"), 1 << 20)
    page_url = "https://e.org/news/articles/" + article.slug + ".html"
    linked = assets.link_references(article, articles_dir, 1 << 20)
    fast, content = assets.link_references_absolute(article, articles_dir, 1 << 20, page_url)
    assert fast == linked
    if content is None:
        content = sanitize.absolutize(fast.body_html, page_url)
    assert content == sanitize.absolutize(linked.body_html, page_url)


@PROPERTIES
@given(st.text(alphabet=st.sampled_from('&<>"\'\u00a0\ue001 a=/?#;\x01\u2028é\t\n\r`\x7f'
                                        '\u200b\U0001f600'), max_size=12))
def test_attribute_values_are_escaped_as_the_sanitizer_escapes_them(value: str) -> None:
    html = '<p><a href="x" title="t">l</a><img src="y" alt="z"></p>'
    marked = sanitize.clean_marked(html, lambda tag, attribute, given: given)
    assert marked is not None
    assert sanitize.fill_marked(marked[0], [value] * len(marked[1])) == \
        sanitize.clean_with_filter(html, lambda tag, attribute, given:
                                   value if attribute in ("href", "src") else given)


@PROPERTIES
@given(st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=40))
def test_entry_ids_are_the_uuid5_of_the_path_or_id(name: str) -> None:
    assert model.uuid5(model.ID_NAMESPACE, name) == str(uuid.uuid5(model.ID_NAMESPACE, name))
    assert model.entry_id(name, None) == \
        "urn:uuid:" + str(uuid.uuid5(model.ID_NAMESPACE, "path:" + name))


FEED_META = feeds.FeedMeta("urn:x", "T", "", "A", "en", "https://e.org/", "https://e.org/f.atom",
                           "https://e.org/f.rss", "https://e.org/f.json")
CLEAN_TEXT = st.text(st.characters(exclude_categories=("Cc", "Cs")), max_size=8)
MOMENTS = st.sampled_from([datetime(2024, 1, 1, tzinfo=UTC),
                           datetime(2024, 1, 1, tzinfo=ZoneInfo("Europe/Paris")),
                           datetime(2024, 1, 1)])  # the last has no time zone: feedgen refuses it
FEED_FIELDS = ("id", "title", "url", "author", "summary", "content", "tag", "enclosure_url",
               "enclosure_type")
# Characters at the edges of what XML allows, added to a field or two of an otherwise clean
# item (so that most items could take the shortcut), or any code points.
EDGES = st.sampled_from("\x00\x01\x08\t\n\x0b\x0c\r\x0e\x1f\x7f\x85\ud7ff\ud800\udfff\ue000"
                        "\ufdd0\ufffd\ufffe\uffff\U00010000\U0010ffff")


def _refusal(check: Callable[[], None]) -> str | None:
    try:
        check()
    except ArticleError as exc:
        return str(exc)
    return None


@PROPERTIES
@given(fields=st.fixed_dictionaries({name: CLEAN_TEXT for name in FEED_FIELDS}),
       spoils=st.lists(st.tuples(st.sampled_from(FEED_FIELDS),
                                 EDGES | st.lists(CHARS, max_size=4).map("".join)), max_size=2),
       tags=st.integers(0, 3), has_content=st.booleans(), has_enclosure=st.booleans(),
       length=st.integers(0, 10**9), published=MOMENTS, updated=MOMENTS)
@example(fields=dict.fromkeys(FEED_FIELDS, "x"), spoils=[], tags=1, has_content=True,
         has_enclosure=True, length=1, published=datetime(2024, 1, 1, tzinfo=UTC),
         updated=datetime(2024, 1, 1))
@example(fields={**dict.fromkeys(FEED_FIELDS, ""), "id": "urn:1", "title": "T"}, spoils=[],
         tags=1, has_content=True, has_enclosure=True, length=0,
         published=datetime(2024, 1, 1), updated=datetime(2024, 1, 1, tzinfo=UTC))
def test_the_feed_check_refuses_what_building_the_entry_refuses(
        fields: dict[str, str], spoils: list[tuple[str, str]], tags: int, has_content: bool,
        has_enclosure: bool, length: int, published: datetime, updated: datetime) -> None:
    f = dict(fields)
    for name, characters in spoils:
        f[name] += characters
    entry = model.Entry("a.md", f["id"], "a", f["url"], f["title"], published, updated,
                        f["author"], (f["tag"],) * tags, f["summary"], enclosure=model.Enclosure(
                            f["enclosure_url"], length, f["enclosure_type"]) if has_enclosure
                        else None)
    item = feeds.FeedItem(entry, f["content"] if has_content else None)
    assert _refusal(lambda: feeds.check_item(FEED_META, item)) == \
        _refusal(lambda: feeds._build_entry(FEED_META, item))


@PROPERTIES
@given(st.datetimes(timezones=st.sampled_from([UTC, ZoneInfo("Europe/Paris"),
                                               ZoneInfo("America/St_Johns")])),
       st.datetimes(timezones=st.just(UTC)))
def test_date_filters_give_what_the_date_methods_give(moment: datetime, other: datetime) -> None:
    env = templates.environment(None)
    by_filter = env.from_string('{{ m|isoformat }}|{{ m|strftime("%d %B %Y") }}|'
                                '{{ o|day > m|day }}')
    by_method = env.from_string('{{ m.isoformat() }}|{{ m.strftime("%d %B %Y") }}|'
                                '{{ o.date() > m.date() }}')
    assert by_filter.render(m=moment, o=other) == by_method.render(m=moment, o=other)
