"""RE2 spellings in `pattern` and CEL matches() behave as on the API server."""

from __future__ import annotations

import pytest

from modelops_local.schema import validate_rules
from modelops_local.schema.regex import compile_re2


@pytest.mark.parametrize(
    ("pattern", "text", "matches"),
    [
        (r"^[[:alpha:]]+\z", "abc", True),
        (r"^[[:alpha:]]+\z", "abc\n", False),
        (r"^[[:digit:][:lower:]-]+$", "a-1", True),
        (r"^\p{L}+$", "äbc", True),
        (r"^\p{L}+$", "a1", False),
        (r"^\pLu", "Abc", False),
        # RE2's $ is the end of the text: a trailing newline does not match (Python's $ would).
        (r"^[a-z]+$", "abc\n", False),
        (r"^[a-z]+$", "abc", True),
        (r"^(a|b)$|^c$", "c\n", False),
        (r"^[$]+$", "$$", True),
        (r"^[^$]+$", "a$", False),
        (r"^[[:alpha:]$]+$", "a$", True),
        (r"^a\$$", "a$", True),
        (r"(?m)^a$", "a\nb", True),
    ],
)
def test_re2_spellings(pattern: str, text: str, matches: bool) -> None:
    assert bool(compile_re2(pattern).search(text)) is matches


def test_matches_in_a_rule_uses_re2_spellings() -> None:
    schema = {"type": "string", "x-kubernetes-validations": [{"rule": r"self.matches('^[[:lower:]]+\\z')"}]}
    assert validate_rules(schema, "abc") == []
    assert len(validate_rules(schema, "ABC")) == 1
