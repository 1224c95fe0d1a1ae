"""Sweep range syntax and Cartesian expansion.

Accepted forms for one sweep axis (in a TOML profile or typed in the UI):

* an integer or float: ``8``
* a list: ``[8, 16, 32]``
* a string list: ``"8, 16, 32"``
* a geometric range: ``"8..256 x2"`` -> 8, 16, 32, 64, 128, 256
* an arithmetic range: ``"200..700 +100"`` -> 200, 300, ..., 700
* a plain range ``"1..4"`` (step +1)

The end is inclusive when the progression lands on it; values never exceed it.
"""

from __future__ import annotations

import re

_RANGE = re.compile(
    r"^\s*(?P<a>-?\d+(?:\.\d+)?)\s*\.\.\s*(?P<b>-?\d+(?:\.\d+)?)\s*(?:(?P<op>[x*+])\s*(?P<s>\d+(?:\.\d+)?))?\s*$"
)
MAX_VALUES_PER_AXIS = 1000


class SweepSyntaxError(ValueError):
    """A sweep value that cannot be parsed; the message says why."""


def _num(text: str) -> int | float:
    value = float(text)
    return int(value) if value.is_integer() and "." not in text else value


def parse_axis(value: object) -> list[int | float]:
    """Parse one sweep axis into a sorted, de-duplicated list of numbers."""
    if isinstance(value, bool):
        raise SweepSyntaxError("expected a number, a list or a range like '8..256 x2'")
    if isinstance(value, (int, float)):
        return [value]
    if isinstance(value, (list, tuple)):
        if not value:
            raise SweepSyntaxError("empty list")
        out: list[int | float] = []
        for item in value:
            out.extend(parse_axis(item))
        return sorted(set(out))
    if not isinstance(value, str):
        raise SweepSyntaxError(f"expected a number, a list or a range, got {type(value).__name__}")
    text = value.strip()
    if not text:
        raise SweepSyntaxError("empty value")
    if "," in text:
        return parse_axis([p for p in (s.strip() for s in text.split(",")) if p] or [""])
    m = _RANGE.match(text)
    if m is None:
        try:
            return [_num(text)]
        except ValueError:
            raise SweepSyntaxError(
                f"cannot parse {value!r}: use a number, 'a, b, c', 'a..b xK' or 'a..b +K'"
            ) from None
    a, b = _num(m["a"]), _num(m["b"])
    op, step_text = m["op"], m["s"]
    if b < a:
        raise SweepSyntaxError(f"range end {b} is below its start {a}")
    step = _num(step_text) if step_text else 1
    out = []
    current: int | float = a
    if op in ("x", "*"):
        if step <= 1:
            raise SweepSyntaxError("a geometric step must be greater than 1")
        if a <= 0:
            raise SweepSyntaxError("a geometric range must start above 0")
        while current <= b:
            out.append(current)
            current = current * step
            if len(out) > MAX_VALUES_PER_AXIS:
                raise SweepSyntaxError(f"more than {MAX_VALUES_PER_AXIS} values")
    else:
        if step <= 0:
            raise SweepSyntaxError("an arithmetic step must be positive")
        i = 0
        while current <= b + 1e-9:
            out.append(current)
            i += 1
            current = a + i * step
            if len(out) > MAX_VALUES_PER_AXIS:
                raise SweepSyntaxError(f"more than {MAX_VALUES_PER_AXIS} values")
    return sorted(set(out))
