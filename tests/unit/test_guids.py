"""GUID parsing: the fast path for the stored form answers exactly as the full parse does."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.core.guids import InvalidGuid, parse_guid


def slow_parse(value: str) -> str | None:
    """What ``uuid.UUID`` alone makes of the text (the path every non-canonical form takes)."""
    try:
        return str(uuid.UUID(value.strip()))
    except ValueError:
        return None


@given(st.uuids())
def test_every_spelling_of_a_guid_parses_to_the_stored_form(value):
    canonical = str(value)
    for spelling in (canonical, canonical.upper(), f"{{{canonical}}}", f"urn:uuid:{canonical}", value.hex,
                     f"  {canonical}\n"):
        assert parse_guid(spelling) == canonical


# 36 characters from the alphabet the fast path looks at, hyphens anywhere: near misses included.
near_guids = st.text(alphabet="0123456789abcdefABCDEF-g{}", min_size=36, max_size=36)


@given(near_guids)
def test_the_fast_path_agrees_with_the_full_parse_on_any_36_characters(text):
    expected = slow_parse(text)
    if expected is None:
        with pytest.raises(InvalidGuid):
            parse_guid(text)
    else:
        assert parse_guid(text) == expected


def test_a_str_subclass_comes_back_as_a_plain_str():
    class Tagged(str):
        pass

    parsed = parse_guid(Tagged("3f2504e0-4f89-41d3-9a0c-0305e82c3301"))
    assert type(parsed) is str and parsed == "3f2504e0-4f89-41d3-9a0c-0305e82c3301"


@pytest.mark.parametrize("bad", ["3f2504e0-4f89-41d3-9a0c-0305e82c330g", "3f2504e0+4f89-41d3-9a0c-0305e82c3301",
                                 "3f2504e04f8941d39a0c0305e82c3301zzzz", "", None, 7])
def test_near_misses_are_refused(bad):
    with pytest.raises(InvalidGuid):
        parse_guid(bad)
