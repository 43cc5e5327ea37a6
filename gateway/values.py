"""Coercion of loosely typed device values ("true", "100.00", null) and unit conversion."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

_TRUE = frozenset({"true"})
_FALSE = frozenset({"false"})


def to_number(value: Any) -> float | None:
    """A finite float from a number or numeric string; None for null, bools, text and NaN."""
    kind = type(value)
    if kind is float:  # the common case first: JSON numbers (orjson gives exact types)
        return value if math.isfinite(value) else None
    if kind is int:
        return float(value)
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        out = float(value)
    elif isinstance(value, str):
        try:
            out = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return out if math.isfinite(out) else None


def normalize(value: Any) -> Any:
    """Canonical form for comparing a payload value with a profile's listed values.

    Booleans sent as strings become booleans, numbers (and numeric strings) become floats, other
    strings are case-folded. None stays None so "null" can be listed explicitly.
    """
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        s = value.strip().casefold()
        if s in _TRUE:
            return True
        if s in _FALSE:
            return False
        num = to_number(s)
        return num if num is not None else s
    return value


Converter = Callable[[float], float]

# (from unit, to unit) -> converter. Canonical units live in anxin.model.METRIC_UNITS.
_CONVERSIONS: dict[tuple[str, str], Converter] = {
    ("°F", "°C"): lambda v: (v - 32.0) * 5.0 / 9.0,
    ("K", "°C"): lambda v: v - 273.15,
    ("µg/m³", "mg/m³"): lambda v: v / 1000.0,
    ("mg/m³", "µg/m³"): lambda v: v * 1000.0,
    ("mV", "V"): lambda v: v / 1000.0,
    ("Pa", "hPa"): lambda v: v / 100.0,
    ("kPa", "hPa"): lambda v: v * 10.0,
    ("%", "%RH"): lambda v: v,
}

# Spellings profiles may use for the same unit.
_ALIASES = {
    "C": "°C", "degC": "°C", "F": "°F", "degF": "°F", "ug/m3": "µg/m³", "μg/m³": "µg/m³",
    "mg/m3": "mg/m³", "RH": "%RH", "%rh": "%RH",
}


def canonical_unit_name(unit: str) -> str:
    return _ALIASES.get(unit, unit)


def converter(source: str, target: str) -> Converter | None:
    """Function converting ``source`` to ``target``; None when no conversion is known."""
    source, target = canonical_unit_name(source), canonical_unit_name(target)
    if source == target:
        return identity
    return _CONVERSIONS.get((source, target))


def identity(v: float) -> float:
    return v
