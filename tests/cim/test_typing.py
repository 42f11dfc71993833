"""Typing of untyped and text parameter values from the MOF declarations."""

from __future__ import annotations

import pytest
from pywbem import CIMDateTime, Uint32

from provider.cim.operations import typed_value
from provider.errors import InvalidParameter, TypeMismatch


@pytest.mark.parametrize(
    ("text", "expected"), [("TRUE", True), (" false ", False), ("False", False), ("true", True)]
)
def test_boolean_text_is_read_as_written(text: str, expected: bool) -> None:
    # pywbem's cimvalue("FALSE", "boolean") is True; a wbemcli `Force=false` must not force.
    assert typed_value(text, "boolean", False, "Force") is expected


@pytest.mark.parametrize("text", ["yes", "0", "", "FALSEY"])
def test_boolean_text_that_is_neither_is_refused(text: str) -> None:
    with pytest.raises(InvalidParameter, match="TRUE or FALSE"):
        typed_value(text, "boolean", False, "Force")


def test_integers_are_range_checked_and_stripped() -> None:
    assert typed_value("\n  7 \n", "uint32", False, "Count") == Uint32(7)
    with pytest.raises(InvalidParameter):
        typed_value("300", "uint8", False, "Small")
    with pytest.raises(InvalidParameter):
        typed_value("-1", "uint32", False, "Count")


def test_arrays_and_scalars_are_not_mixed() -> None:
    assert typed_value(["a", "b"], "string", True, "Names") == ["a", "b"]
    assert typed_value("a", "string", True, "Names") == ["a"]
    with pytest.raises(TypeMismatch):
        typed_value(["a"], "string", False, "Name")


def test_datetime_text() -> None:
    value = typed_value("20261122080000.000000+000", "datetime", False, "When")
    assert isinstance(value, CIMDateTime)


@pytest.mark.parametrize(
    ("text", "cimtype", "expected"),
    [
        (
            "abc",
            "uint32",
            "JobID must be a uint32 (a whole number from 0 to 4294967295), not 'abc'.",
        ),
        ("300", "uint8", "JobID must be a uint8 (a whole number from 0 to 255), not '300'."),
        ("-200", "sint8", "JobID must be a sint8 (a whole number from -128 to 127), not '-200'."),
        ("x", "real64", "JobID must be a real64 (a number), not 'x'."),
        ("x", "datetime", "JobID must be a datetime (such as 20261206043000.000000+000"),
    ],
)
def test_a_wrong_value_is_named_with_what_to_send_instead(
    text: str, cimtype: str, expected: str
) -> None:
    """No Python wording ("invalid literal for int() with base 10") reaches the client."""
    with pytest.raises(InvalidParameter) as err:
        typed_value(text, cimtype, False, "JobID")
    assert err.value.description.startswith(expected)
    assert "literal" not in err.value.description and "convert" not in err.value.description
