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
