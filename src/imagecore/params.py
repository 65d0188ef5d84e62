"""Typed product parameters and their validation.

A `Parameter` describes one knob of a product (type, range, default, choices)
and turns whatever a client sent (JSON values, or strings from a CLI or a form)
into a checked Python value, or raises `InvalidParameter` with a message that
says what would have been accepted.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Mapping
from typing import Any

import attrs

from imagecore.errors import InvalidParameter

__all__ = ["Kind", "Parameter", "parse_ratio", "validate_params"]

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


class Kind(enum.StrEnum):
    """The JSON-facing type of a parameter."""

    INTEGER = "integer"
    NUMBER = "number"
    BOOLEAN = "boolean"
    STRING = "string"
    CHOICE = "choice"
    COLOR = "color"


_COLOR = re.compile(r"^#?([0-9a-fA-F]{6}|[0-9a-fA-F]{8})$")
_RATIO = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*[:/x]\s*(\d+(?:\.\d+)?)\s*$")


@attrs.frozen
class Parameter:
    """One parameter of a product, as data."""

    name: str
    kind: Kind
    description: str
    default: Any = None
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    max_length: int | None = None
    pattern: str | None = None
    required: bool = False

    def coerce(self, raw: object) -> Any:  # noqa: ANN401 - the value's type depends on kind
        """Check and convert one raw value; raise `InvalidParameter` if it is wrong."""
        converter = _CONVERTERS[self.kind]
        value = converter(self, raw)
        self._check_range(value)
        return value

    def _check_range(self, value: object) -> None:
        if not isinstance(value, int | float) or isinstance(value, bool):
            return
        low, high = self.minimum, self.maximum
        if (low is not None and value < low) or (high is not None and value > high):
            raise InvalidParameter(
                self.name, f"must be between {_fmt(low)} and {_fmt(high)}, got {value}"
            )


def _fmt(bound: float | None) -> str:
    if bound is None:
        return "any"
    return str(int(bound)) if float(bound).is_integer() else str(bound)


def _to_int(p: Parameter, raw: object) -> int:
    if isinstance(raw, bool):
        raise InvalidParameter(p.name, f"must be a whole number, got {raw!r}")
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    if isinstance(raw, str) and re.fullmatch(r"\s*[+-]?\d{1,12}\s*", raw):
        return int(raw)
    raise InvalidParameter(p.name, f"must be a whole number, got {raw!r}")


def _to_number(p: Parameter, raw: object) -> float:
    if isinstance(raw, bool):
        raise InvalidParameter(p.name, f"must be a number, got {raw!r}")
    value: float
    if isinstance(raw, int | float):
        value = float(raw)
    elif isinstance(raw, str):
        try:
            value = float(raw)
        except ValueError:
            raise InvalidParameter(p.name, f"must be a number, got {raw!r}") from None
    else:
        raise InvalidParameter(p.name, f"must be a number, got {raw!r}")
    if not math.isfinite(value):
        raise InvalidParameter(p.name, "must be a finite number")
    return value


def _to_bool(p: Parameter, raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
        return raw.strip().lower() in _TRUE
    raise InvalidParameter(p.name, f"must be true or false, got {raw!r}")


def _to_string(p: Parameter, raw: object) -> str:
    if not isinstance(raw, str):
        raise InvalidParameter(p.name, f"must be a string, got {raw!r}")
    if p.max_length is not None and len(raw) > p.max_length:
        raise InvalidParameter(p.name, f"must be at most {p.max_length} characters long")
    if p.pattern is not None and not re.fullmatch(p.pattern, raw):
        raise InvalidParameter(p.name, f"has the wrong form: {raw[:40]!r}")
    return raw


def _to_choice(p: Parameter, raw: object) -> str:
    value = raw.strip().lower() if isinstance(raw, str) else raw
    if value not in p.choices:
        raise InvalidParameter(p.name, f"must be one of {', '.join(p.choices)}; got {raw!r}")
    return str(value)


def _to_color(p: Parameter, raw: object) -> str:
    if not isinstance(raw, str) or not _COLOR.fullmatch(raw.strip()):
        raise InvalidParameter(
            p.name, f"must be a hex colour like #ff8800 or #ff880080, got {raw!r}"
        )
    return "#" + raw.strip().lstrip("#").lower()


_CONVERTERS = {
    Kind.INTEGER: _to_int,
    Kind.NUMBER: _to_number,
    Kind.BOOLEAN: _to_bool,
    Kind.STRING: _to_string,
    Kind.CHOICE: _to_choice,
    Kind.COLOR: _to_color,
}


def parse_ratio(name: str, value: str) -> float:
    """Read an aspect ratio such as ``16:9``, ``4/3`` or ``1x1`` as width/height."""
    match = _RATIO.fullmatch(value)
    if not match or float(match.group(2)) == 0 or float(match.group(1)) == 0:
        raise InvalidParameter(name, f"must be an aspect ratio like 16:9, got {value!r}")
    return float(match.group(1)) / float(match.group(2))


def validate_params(
    parameters: tuple[Parameter, ...], raw: Mapping[str, object] | None
) -> dict[str, Any]:
    """Check raw parameters against their definitions and fill in the defaults.

    Unknown names are rejected (a typo should not be silently ignored); a
    ``None`` value means "use the default".
    """
    raw = raw or {}
    if not isinstance(raw, Mapping):
        raise InvalidParameter("params", "must be an object of name: value pairs")
    known = {p.name: p for p in parameters}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        accepted = ", ".join(sorted(known)) or "none"
        raise InvalidParameter(
            unknown[0], f"is not a parameter of this product (accepted: {accepted})"
        )
    values: dict[str, Any] = {}
    for p in parameters:
        given = raw.get(p.name)
        if given is None or given == "":
            if p.required:
                raise InvalidParameter(p.name, "is required")
            if p.default is not None:
                values[p.name] = p.default
            continue
        values[p.name] = p.coerce(given)
    return values
