"""A lone image with alt text becomes a captioned figure; inline images stay inline."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from digest.publish.formats.markdown import _md
from digest.publish.sanitize import figures, sanitize
from tests.publish.test_assets import illustrated, run


def rendered(markdown: str) -> str:
    return figures(sanitize(_md.render(markdown)))


def test_a_lone_image_with_alt_text_is_a_captioned_figure() -> None:
    assert rendered("![A dark sky](img/dark.png)") == (
        '<figure><img src="img/dark.png" alt="A dark sky">'
        "<figcaption>A dark sky</figcaption></figure>\n")


def test_a_linked_lone_image_keeps_its_link() -> None:
    assert rendered("[![Linked](a.png)](https://example.org/)") == (
        '<figure><a href="https://example.org/" rel="noopener noreferrer">'
        '<img src="a.png" alt="Linked"></a><figcaption>Linked</figcaption></figure>\n')


def test_the_caption_is_text_even_when_the_alt_looks_like_markup() -> None:
    html = rendered('![A <b>bold</b> & "quoted" <script>x</script>](a.png)')
    caption = html.split("<figcaption>")[1].split("</figcaption>")[0]
    assert caption == 'A &lt;b&gt;bold&lt;/b&gt; &amp; "quoted" &lt;script&gt;x&lt;/script&gt;'


def test_inline_decorative_and_grouped_images_are_left_alone() -> None:
    for markdown in ("Text ![inline](a.png) more.", "![](decorative.png)",
                     "![one](a.png)\n![two](b.png)", "![ ](blank.png)"):
        html = rendered(markdown)
        assert "<figure>" not in html, markdown
        assert "<p>" in html


def test_article_page_shows_the_figure(site: Path) -> None:
    illustrated(site)
    _, settings = run(site)
    page = (settings.output_dir / "articles/posts/hello.html").read_text(encoding="utf-8")
    assert '<figure><img src="img/dark.png" alt="A dark sky"><figcaption>A dark sky' \
           "</figcaption></figure>" in page


_PIECES = st.sampled_from([
    "![", "](", ")", "[", "]", "<p>", "</p>", "<img src=x alt=", "<a href=y>", "</a>", '"',
    "'", "<", ">", "&", "\n\n", " ", "alt", "figure", "<figcaption>", "x.png", "\\", "*",
])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_PIECES, st.text(max_size=8)), max_size=30))
def test_figures_never_make_markup_the_sanitizer_would_change(parts: list[str]) -> None:
    html = figures(sanitize(_md.render("".join(parts))))
    assert sanitize(html) == html
    assert figures(html) == html  # idempotent: a figure is not wrapped again
