"""Property tests for what a stranger's article file reaches: front matter, the plain-text
format, dates and slugs. Whatever the input, reading gives an Article or an ArticleError
that names the file, never another exception."""

from __future__ import annotations

import string
from collections.abc import Callable
from datetime import UTC
from zoneinfo import ZoneInfo

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from digest.errors import ArticleError, shown_path
from digest.model import Article, SourceFile
from digest.publish.formats import markdown
from digest.publish.formats.text import HEADER_KEYS
from digest.publish.reading import (
    SLUG_MAX,
    SLUG_SEGMENT_MAX,
    YEAR_MAX,
    YEAR_MIN,
    check_slug,
    read_article,
)

ZONES = st.sampled_from([ZoneInfo(z) for z in ("UTC", "Asia/Tokyo", "Pacific/Kiritimati",
                                                 "America/St_Johns", "Etc/GMT+12")])
PROPERTIES = settings(max_examples=200, deadline=None,
                      suppress_health_check=[HealthCheck.too_slow])
KEYS = ("title", "date", "updated", "author", "tags", "summary", "id", "slug", "draft")
# Text that YAML and the formats find interesting: structure, anchors, tags, quotes, dates.
PIECES = st.sampled_from([
    "\n", " ", "  ", ": ", "- ", "---", "...", "&a ", "*a", "!!binary ", "!!python/name:x ",
    "[", "]", "{", "}", ",", "'", '"', "|", ">", "#", "?", "<<: ", "\t", "\\", "%YAML 1.1",
    "2024-01-01", "0001-01-01", "9999-12-31T23:59:59+23:59", "1e400", "nan", ".inf", "9" * 50,
    "T10:00", "Z", "+14:00", "é", "\x85", "\u2028", "\ufeff", "\x01", "true", "null", "~",
    *KEYS, *(k + ": " for k in KEYS), *(k + " " for k in HEADER_KEYS), "date ",
])
NOISE = st.lists(st.one_of(PIECES, st.text(max_size=8)), max_size=40).map("".join)


def read(key: str, data: bytes, zone: ZoneInfo) -> Article | ArticleError:
    try:
        return read_article(SourceFile(key, "/nonexistent/" + key, len(data), 0), data, zone,
                            1 << 20)
    except ArticleError as exc:
        assert exc.path == key and exc.message.startswith(shown_path(key) + ": ")
        assert exc.reason and exc.hint
        return exc


def assert_sound(article: Article | ArticleError) -> None:
    """An article that reads is one every later stage can use."""
    if isinstance(article, ArticleError):
        return
    for moment in (article.published, article.updated):
        if moment is not None:
            assert moment.tzinfo is not None and YEAR_MIN - 1 <= moment.year <= YEAR_MAX + 1
            moment.astimezone(UTC)  # send and preview do this: it must not overflow
    assert article.title and "\n" not in article.title
    check_slug(article.key, article.slug, explicit=True)  # what was accepted stays accepted


@PROPERTIES
@given(NOISE, st.text(max_size=40), ZONES)
def test_any_front_matter_gives_an_article_or_an_article_error(front: str, body: str,
                                                               zone: ZoneInfo) -> None:
    data = f"---\n{front}\n---\n{body}\n".encode("utf-8", "surrogatepass")
    assert_sound(read("a.md", data, zone))


SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(),
                    st.text(max_size=30), st.dates().map(str),
                    st.datetimes(timezones=st.sampled_from([None, UTC])).map(str))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=5), inner, max_size=4), max_leaves=12)


@PROPERTIES
@given(st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), VALUES, max_size=8),
       st.text(max_size=40), ZONES)
def test_any_well_formed_yaml_front_matter_gives_an_article_or_an_article_error(
        headers: dict[str, object], body: str, zone: ZoneInfo) -> None:
    front = yaml.safe_dump(headers, allow_unicode=True)
    data = f"---\n{front}---\n{body}\n".encode("utf-8", "surrogatepass")
    assert_sound(read("b.markdown", data, zone))


@PROPERTIES
@given(st.lists(st.tuples(st.sampled_from(HEADER_KEYS), NOISE), max_size=5), NOISE, NOISE, ZONES)
def test_any_plain_text_gives_an_article_or_an_article_error(
        headers: list[tuple[str, str]], date: str, rest: str, zone: ZoneInfo) -> None:
    head = "".join(f"{name} {value}\n" for name, value in headers)
    data = f"{head}date {date}{rest}".encode("utf-8", "surrogatepass")
    assert_sound(read("sub/c.txt", data, zone))


@PROPERTIES
@given(st.binary(max_size=300), ZONES)
def test_any_bytes_give_an_article_or_an_article_error(data: bytes, zone: ZoneInfo) -> None:
    assert_sound(read("d.txt", data, zone))
    assert_sound(read("d.md", b"---\n" + data, zone))


@PROPERTIES
@given(st.datetimes().map(lambda d: d.replace(microsecond=0)),
       st.sampled_from(["", "Z", "+09:00", "-23:59", "+14:00"]), ZONES, st.booleans())
def test_dates_outside_the_years_digest_can_handle_are_refused(
        moment: object, offset: str, zone: ZoneInfo, markdown: bool) -> None:
    text = str(moment).replace(" ", "T") + offset
    data = (f"---\ndate: {text}\n---\nText.\n" if markdown else f"date {text} Text.\n").encode()
    article = read("e.md" if markdown else "e.txt", data, zone)
    assert_sound(article)
    if isinstance(article, Article):
        assert YEAR_MIN <= int(text[:4]) <= YEAR_MAX
    elif not YEAR_MIN <= int(text[:4]) <= YEAR_MAX:
        assert "out of range" in article.reason


SLUG_CHARS = st.sampled_from([*string.ascii_letters, *string.digits, *"-_.~/", "//", "/./",
                              "/../", "/.", "é", "\n", " ", "\\", "%2f", "\udcff"])


@PROPERTIES
@given(st.one_of(st.lists(SLUG_CHARS, max_size=60).map("".join), st.text(max_size=250)))
def test_a_slug_is_either_safe_to_serve_or_refused_naming_the_file(slug: str) -> None:
    try:
        checked = check_slug("f.md", slug, explicit=True)
    except ArticleError as exc:
        assert exc.path == "f.md" and "slug" in exc.reason
        exc.message.encode("utf-8")  # printable: lone surrogates are escaped
        return
    assert checked == slug and len(slug) <= SLUG_MAX and slug.isascii()
    for segment in slug.split("/"):
        assert 0 < len(segment) <= SLUG_SEGMENT_MAX and not segment.startswith(".")
        assert all(ch.isalnum() or ch in "-_.~" for ch in segment)


@PROPERTIES
@given(st.lists(st.text(min_size=1, max_size=20).filter(lambda s: "/" not in s), min_size=1,
                max_size=4), st.sampled_from([".txt", ".md"]), ZONES)
def test_a_slug_made_from_any_file_path_is_checked_the_same_way(
        parts: list[str], suffix: str, zone: ZoneInfo) -> None:
    key = "/".join(parts) + suffix
    body = b"date 2024-01-01 Text.\n" if suffix == ".txt" else b"---\ndate: 2024-01-01\n---\nText.\n"
    article = read(key, body, zone)
    assert_sound(article)
    stem = key.rsplit(".", 1)[0].strip("/")
    try:
        check_slug(key, stem, explicit=False)
        accepted = True
    except ArticleError:
        accepted = False
    assert isinstance(article, Article) == accepted


_SCALARS = st.one_of(
    st.sampled_from(["yes", "No", "on", "null", "~", "1e3", "0x1F", "2024-01-01", "12:30",
                     "'quoted'", '"dq \\u00e9 \\x41"', "a: b", "a #c", "- x", "? x", ",", "",
                     "'", '"', "[", "]", "-", "a, b"]),
    st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\n\r"), max_size=12),
)


_VALUES = st.one_of(
    _SCALARS,
    st.lists(_SCALARS, max_size=3).map(lambda values: f"[{', '.join(values)}]"),
    st.lists(_SCALARS, min_size=2, max_size=3).map(" ".join),
)


@settings(max_examples=500, deadline=None)
@given(lines=st.lists(st.tuples(st.from_regex(r"[A-Za-z_][A-Za-z0-9_-]{0,6}", fullmatch=True),
                                _VALUES), max_size=5))
@example(lines=[("date", "2024-01-01"), ("tags", "[a, 2024-01-02, yes]")])
@example(lines=[("A", "&0")])
def test_front_matter_loads_the_same_with_the_fast_parser(lines: list[tuple[str, str]]) -> None:
    """Front matter the fast path takes (libyaml) gives what the careful loader gives, or
    an error where it gives one."""
    front = "".join(f"{key}: {value}\n" for key, value in lines)

    def outcome(load: Callable[[str], object]) -> object:
        try:
            return ("ok", load(front))
        except yaml.YAMLError:
            return ("error",)
        except markdown._Refused:  # an anchor, alias, deep nesting or long value ("A: &0")
            return ("refused",)

    careful = outcome(lambda text: yaml.load(text, Loader=markdown._Loader))  # noqa: S506
    assert outcome(markdown.load_front) == careful


@PROPERTIES
@given(NOISE, st.sampled_from(["a.md", "a.txt"]), st.sampled_from(["utf-16-le", "utf-16-be"]))
def test_utf16_with_its_mark_reads_as_the_same_text_in_utf8(text: str, key: str,
                                                            encoding: str) -> None:
    """A file saved as UTF-16 (with its byte order mark) is the same article as the text
    saved as UTF-8, or the same refusal; never another exception."""
    mark = "\ufeff".encode(encoding)
    as_utf16 = read(key, mark + text.encode(encoding), ZoneInfo("UTC"))
    as_utf8 = read(key, text.encode("utf-8"), ZoneInfo("UTC"))
    if isinstance(as_utf8, ArticleError):
        assert isinstance(as_utf16, ArticleError) and as_utf16.message == as_utf8.message
    else:
        assert as_utf16 == as_utf8
