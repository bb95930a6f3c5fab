"""Property tests: each fast path of reading an article agrees with the plain way it replaces."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from digest.publish import sanitize

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
