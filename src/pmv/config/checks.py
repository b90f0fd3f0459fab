"""Per-field value checks for the config schema, and the one function that applies them.

A schema field names its check next to its default (``opt(16, ..., check=at_least(1))``). A check is a predicate
plus the words that describe the accepted values, so every failure reads the same way:
``'test.num_spatial_views' must be one of 1, 3 (crops along the long side); got 2``.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from pmv.errors import ConfigError


@dataclass(frozen=True)
class Check:
    ok: Callable[[Any], bool]
    expect: str  # what is accepted, read after "must be"

    def hint(self, key: str, value: Any) -> str:
        """Extra words after the error, e.g. how to write the value (sizes override it)."""
        return ""


def at_least(low: float) -> Check:
    return Check(lambda v: v >= low, f">= {low}")


def above(low: float) -> Check:
    return Check(lambda v: v > low, f"> {low}")


def between(low: float, high: float, *, high_open: bool = False) -> Check:
    if high_open:
        return Check(lambda v: low <= v < high, f"in [{low}, {high})")
    return Check(lambda v: low <= v <= high, f"in [{low}, {high}]")


def one_of(*choices: Any, why: str = "") -> Check:
    return Check(lambda v: v in choices, f"one of {', '.join(map(str, choices))}" + (f" ({why})" if why else ""))


def not_empty() -> Check:
    return Check(lambda v: len(v) > 0, "non-empty")


def each(check: Check, count: int | None = None) -> Check:
    """Every item of a list passes ``check`` (and, with ``count``, there are exactly that many)."""
    prefix = f"{count} values, each" if count else "a list of values, each"
    return Check(lambda v: (count is None or len(v) == count) and all(check.ok(x) for x in v),
                 f"{prefix} {check.expect}")


def min_max(low_exclusive: float = 0, *, allow_empty: bool = False) -> Check:
    def ok(v: list) -> bool:
        return (allow_empty and not v) or (len(v) == 2 and low_exclusive < v[0] <= v[1])

    return Check(ok, ("[] or " if allow_empty else "") + f"[min, max] with {low_exclusive} < min <= max")


class _SizeCheck(Check):
    def hint(self, key: str, value: Any) -> str:
        if isinstance(value, (list, tuple)):
            return ""  # the right form with wrong values: "must be" says enough
        found = re.fullmatch(r"\s*(\d+)\s*[xX*,]\s*(\d+)\s*", str(value)) if isinstance(value, str) else None
        height, width = (found.group(1), found.group(2)) if found else ("256", "192")
        return f"; write it as {key}=[{height},{width}] (H x W, height first)"


def size_hw() -> Check:
    """A spatial size ``[height, width]``: two positive ints."""
    return _SizeCheck(lambda v: len(v) == 2 and min(v) > 0, "[height, width] with two positive ints")


def opt(default: Any, help: str, *, seed: str = "", check: Check | None = None) -> Any:  # noqa: A002
    """A schema field with its help text, the seed (PySlowFast) option it replaces, and its value check."""
    metadata = {"help": help, "seed": seed, "check": check}
    if isinstance(default, (list, dict)) or dataclasses.is_dataclass(default):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def describe(section: type, name: str) -> str:
    """``"DATA.NUM_FRAMES: frames per clip"``: a field's seed option and help, for `pmv config show`."""
    meta = next(f.metadata for f in dataclasses.fields(section) if f.name == name)
    seed, text = meta.get("seed", ""), meta.get("help", "")
    return f"{seed}: {text}" if seed and text else seed or text


def type_hint(section: type, name: str, key: str, value: Any) -> str:
    """Extra words for a value of the wrong type (e.g. the accepted form of a crop size)."""
    meta = next((f.metadata for f in dataclasses.fields(section) if f.name == name), {})
    check = meta.get("check")
    return check.hint(key, value) if check else ""


def validate(config: Any, where: str = "") -> Any:
    """Apply every field's check, naming the dotted key; ``None`` (unset, "builder's default") always passes."""
    for f in dataclasses.fields(config):
        key = f"{where}.{f.name}" if where else f.name
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            validate(value, key)
            continue
        check = f.metadata.get("check")
        if check is None or value is None:
            continue
        try:
            ok = check.ok(value)
        except TypeError:  # e.g. a list where a number belongs, from a config built in Python
            ok = False
        if not ok:
            raise ConfigError(f"{key!r} must be {check.expect}; got {value!r}{check.hint(key, value)}")
    return config
