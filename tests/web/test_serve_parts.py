"""The pure pieces of `digest serve`: path checks, content types, header parsing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from digest.web.content_types import ATOM, JSON_FEED, content_type, is_compressible
from digest.web.paths import relative_path
from digest.web.static import accepts_gzip, redact_query


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/", "index.html"),
        ("/feed.atom", "feed.atom"),
        ("/archive/", "archive/index.html"),
        ("/archive", "archive"),
        ("//archive//feed.xml", "archive/feed.xml"),
        ("//", "index.html"),
        ("/a b/ü.html", "a b/ü.html"),
        ("/..", None),
        ("/../x", None),
        ("/a/../x", None),
        ("/./x", None),
        ("/.hidden", None),
        ("/a/.git/config", None),
        ("/a\\..\\x", None),
        ("/a\x00.html", None),
        ("/a\n", None),
        ("x", None),
        ("", None),
    ],
)
def test_relative_path(path: str, expected: str | None) -> None:
    assert relative_path(path) == expected


@pytest.mark.parametrize("raw", [b"/a%2fb", b"/a%2Fb", b"/a%5cb", b"/%5C"])
def test_encoded_separators_are_refused(raw: bytes) -> None:
    assert relative_path("/a/b", raw) is None


@pytest.mark.parametrize(
    ("name", "head", "expected"),
    [
        ("feed.atom", b"", "application/atom+xml"),
        ("FEED.RSS", b"", "application/rss+xml"),
        ("feed.json", b"{}", "application/feed+json"),
        ("archive-2.json", b'{"version": "https://jsonfeed.org/version/1.1"}', JSON_FEED),
        ("data.json", b'{"a": 1}', "application/json"),
        ("feed.xml", b'<?xml version="1.0"?>\n<?xml-stylesheet href="x.xsl"?>\n<feed>', ATOM),
        ("feed.xml", b"\xef\xbb\xbf<!-- c --><rss version='2.0'>", "application/rss+xml"),
        ("sitemap.xml", b'<?xml version="1.0"?><urlset>', "application/xml"),
        ("feed.xsl", b"", "text/xsl; charset=utf-8"),
        ("index.html", b"", "text/html; charset=utf-8"),
        ("style.css", b"", "text/css; charset=utf-8"),
        ("README", b"", "application/octet-stream"),
    ],
)
def test_content_type(name: str, head: bytes, expected: str) -> None:
    assert content_type(name, head) == expected


def test_compressible_types() -> None:
    for media_type in ("text/html; charset=utf-8", "application/atom+xml", "application/rss+xml",
                       "application/feed+json", "application/json", "image/svg+xml"):
        assert is_compressible(media_type), media_type
    for media_type in ("image/png", "font/woff2", "application/octet-stream", "audio/mpeg"):
        assert not is_compressible(media_type), media_type


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"gzip", True),
        (b"gzip, deflate, br", True),
        (b"br;q=1.0, gzip;q=0.5", True),
        (b"GZIP", True),
        (b"x-gzip", True),
        (b"*", True),
        (b"identity", False),
        (b"", False),
        (b"gzip;q=0", False),
        (b"gzip;q=0.000, *", False),
        (b"*;q=0", False),
        (b"br, *;q=0.1", True),
        (b"gzip;q=nonsense", False),
    ],
)
def test_accepts_gzip(value: bytes, expected: bool) -> None:
    assert accepts_gzip(value) is expected


_QUERY_TEXT = st.text(st.characters(codec="ascii", exclude_characters="&"), max_size=20)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["token", "Token", "%74oken", "to", "q", "token_x"]),
                          st.sampled_from(["=", ""]), _QUERY_TEXT), max_size=6))
def test_redact_query_hides_every_token_value_and_keeps_the_rest(
        parts: list[tuple[str, str, str]]) -> None:
    query = "&".join(name + equals + value for name, equals, value in parts)
    shown = redact_query(query).split("&") if parts else []
    for (name, equals, value), line in zip(parts, shown, strict=True):
        if name.lower() in ("token", "%74oken") and equals and value:
            assert line == f"{name}=[redacted]"
        else:
            assert line == name + equals + value
