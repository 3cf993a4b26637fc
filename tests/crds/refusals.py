"""What a refused spec must show: the API server's errors, one of them naming the field (and the fix)."""

from __future__ import annotations


def check_refused(what: str, found: list[str], field: str, phrase: str) -> None:
    """`found` (the validation errors) refuses the object, names `field`, and says `phrase` if given."""
    assert found, f"{what}: accepted, but the API server must refuse it"
    assert any(e.startswith((f"{field}:", f"{field}[")) for e in found), (
        f"{what}: no error names {field}: {found}"
    )
    if phrase:
        assert any(phrase in e for e in found), f"{what}: no error says {phrase!r}: {found}"
