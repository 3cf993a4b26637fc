"""RE2 patterns (Go's regexp, used by the API server for `pattern` and CEL's matches) run with Python's re.

The two agree on the syntax CRDs use, except for a few RE2 spellings Python lacks: `\\z` (end of text),
POSIX classes such as `[[:alpha:]]`, and `\\pL`/`\\p{L}`-style Unicode classes for letters and digits.
Those are translated; compiled patterns are cached because the same ones run on every request.
"""

from __future__ import annotations

import functools
import re

__all__ = ["compile_re2"]

_POSIX = {
    "alnum": "0-9A-Za-z",
    "alpha": "A-Za-z",
    "ascii": "\\x00-\\x7F",
    "blank": "\\t ",
    "cntrl": "\\x00-\\x1F\\x7F",
    "digit": "0-9",
    "graph": "!-~",
    "lower": "a-z",
    "print": " -~",
    "punct": "!-/:-@\\[-`{-~",
    "space": "\\t\\n\\v\\f\\r ",
    "upper": "A-Z",
    "word": "0-9A-Za-z_",
    "xdigit": "0-9A-Fa-f",
}
_UNICODE = {"L": "^\\W\\d_", "Lu": "A-Z", "Ll": "a-z", "N": "\\d", "Nd": "\\d"}


def _end_anchors(pattern: str) -> str:
    """RE2's `$` (without the m flag) matches at the very end only; Python's also before a final newline.

    So `^[a-z]+$` would accept "abc\\n" here and refuse it on the API server: every `$` outside a
    character class becomes `\\Z`, Python's spelling of RE2's.
    """
    if pattern.startswith("(?") and "m" in pattern[2 : pattern.find(")")]:
        return pattern
    out: list[str] = []
    in_class = False
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            if pattern.startswith("[:", i) and ":]" in pattern[i:]:
                end = pattern.index(":]", i) + 2
                out.append(pattern[i:end])
                i = end
                continue
            if char == "]" and out[-1] not in ("[", "[^"):
                in_class = False
        elif char == "[":
            in_class = True
            if pattern[i + 1 : i + 2] == "^":
                out.append("[^")
                i += 2
                continue
        elif char == "$":
            char = "\\Z"
        out.append(char)
        i += 1
    return "".join(out)


def _translate(pattern: str) -> str:
    out = _end_anchors(pattern).replace("\\z", "\\Z")
    for name, chars in _POSIX.items():
        out = out.replace(f"[:{name}:]", chars)
    for name, chars in _UNICODE.items():
        out = out.replace(f"\\p{{{name}}}", f"[{chars}]")
        if len(name) == 1:
            # Without braces RE2 reads one letter: \pLu is \pL followed by "u".
            out = out.replace(f"\\p{name}", f"[{chars}]")
    return out


@functools.lru_cache(maxsize=1024)
def compile_re2(pattern: str) -> re.Pattern[str]:
    """The pattern compiled with RE2 spellings translated; re.error when it is not a valid pattern."""
    return re.compile(_translate(pattern))
