"""protocol/text.py: the one rule for outside text on a terminal, whole or cut."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from protocol.text import escaped, for_terminal

HOSTILE = "\x1b]0;pwned\x07 \x9b \u202e"


def test_control_c1_and_bidi_characters_are_escaped() -> None:
    assert escaped(HOSTILE) == "\\u001b]0;pwned\\u0007 \\u009b \\u202e"
    assert escaped("tab\tand\nnewline") == "tab\\u0009and\\u000anewline"
    assert escaped("Beograd, Ћирилица, ü") == "Beograd, Ћирилица, ü"


def test_a_cut_never_splits_an_escape() -> None:
    assert escaped("ab" + "\x1b" * 3, 10) == "ab\\u001b\u2026"
    assert escaped("x" * 20, 10) == "x" * 9 + "\u2026"
    assert escaped("short", 10) == "short"


@given(st.text(), st.integers(min_value=1, max_value=40))
def test_a_cut_text_is_within_the_limit_and_a_prefix(text: str, limit: int) -> None:
    out = escaped(text, limit)
    assert len(out) <= limit
    whole = escaped(text)
    assert out == whole or (out.endswith("\u2026") and whole.startswith(out[:-1]))


def test_for_terminal_escapes_every_string_in_the_data() -> None:
    data = {"a": [HOSTILE, 1, None, {HOSTILE: True}], "b": 2.5}
    assert for_terminal(data) == {
        "a": [escaped(HOSTILE), 1, None, {escaped(HOSTILE): True}],
        "b": 2.5,
    }


def test_every_format_character_is_escaped() -> None:
    """Zero-width characters, joiners, BOM, soft hyphen, tag characters (category Cf) make two
    different names look alike: every one is escaped (an attack review found them shown raw)."""
    import sys
    import unicodedata

    raw = [chr(c) for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)) == "Cf"]
    assert raw and [c for c in raw if escaped(c) == c] == []
    assert escaped("k\u200botor\ufeff\xad") == "k\\u200botor\\ufeff\\u00ad"
    assert escaped("\U000e0041") == "\\udb40\\udc41"  # as JSON writes it, a surrogate pair
    # invisible, though not Cf (a second review): CGJ, Hangul fillers, variation selectors
    for c in "\u034f\u115f\u1160\u3164\uffa0\ufe00\ufe0f\U000e0100\U000e01ef":
        assert escaped(c) != c, hex(ord(c))


@given(st.text())
def test_json_text_for_terminal_is_the_same_json_with_nothing_unsafe(text: str) -> None:
    import json

    from protocol.text import json_text_for_terminal

    for encoded in (json.dumps({"k": text}, ensure_ascii=False), json.dumps([text], indent=2)):
        out = json_text_for_terminal(encoded)
        assert json.loads(out) == json.loads(encoded)
        assert escaped(out.replace("\n", "")) == out.replace("\n", "")  # nothing left to escape
