"""honed.display: the one way numbers and intervals are written, and the one progress bar."""

from __future__ import annotations

import pytest

from honed.display import Bar, fmt, fmt_ci

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("value", "kwargs", "text"), [
    (0.12345, {}, "0.123"),
    (0.12345, {"digits": 1}, "0.1"),
    (812.25, {"digits": 1}, "812.2"),  # Python's round-half-even on the binary value, as f-strings do
    (0.25, {"signed": True}, "+0.250"),
    (-0.25, {"signed": True}, "-0.250"),
    (3, {"signed": True}, "+3"),
    (7, {}, "7"),
    (True, {}, "True"),
    (0.0, {}, "0.000"),
    (0.00001234, {"digits": 4}, "1.234e-05"),  # not "0.0000": a p-value that small is not zero
    (0.0004, {}, "0.0004"),
    (None, {}, "n/a"),
    (float("nan"), {}, "n/a"),
    (None, {"missing": "—"}, "—"),
    ("Q8_0", {}, "Q8_0"),
])
def test_fmt(value: object, kwargs: dict[str, object], text: str) -> None:
    assert fmt(value, **kwargs) == text  # type: ignore[arg-type]


def test_fmt_ci() -> None:
    assert fmt_ci([0.1, 0.4]) == "[0.100, 0.400]"
    assert fmt_ci((-0.05, 0.2), signed=True) == "[-0.050, +0.200]"
    assert fmt_ci(None) == fmt_ci([]) == fmt_ci([0.1]) == "n/a"
    assert fmt_ci(None, missing="") == ""


def test_a_disabled_bar_does_nothing_and_an_enabled_one_counts() -> None:
    with Bar(False, "off", total=3) as bar:
        bar.grow(2)
        bar.advance()
    with Bar(True, "on", unit="items", eta=True, transient=True) as bar:
        bar.grow(4)
        bar.advance(3)
        assert bar._p.tasks[0].total == 4 and bar._p.tasks[0].completed == 3
    assert bar._p is None
