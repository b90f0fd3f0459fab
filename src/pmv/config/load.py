"""Load configurations: YAML recipes that extend a base file, command-line overrides, strict validation.

A recipe names its parent with ``_base_: ../base.yaml`` (a path relative to the recipe; a list merges several
in order). Overlays (``configs/smoke.yaml``, ``pmv train --smoke``) are stacked on the recipe before the
command-line overrides, which are ``dotted.key=value`` strings whose value is parsed as YAML
(``data.num_frames=8``, ``transform.train_crop=[256,192]``). Unknown keys, values of the wrong type and values
out of range fail at load time, naming the key and the closest valid one or the accepted values.

A layer may hold ``_scale_sizes_: {factor: F, multiple: M}``: before its own keys are merged, the spatial sizes
set beneath it (:data:`SIZE_KEYS`) are multiplied by F and rounded to a multiple of M, so a recipe's crop keeps
its aspect at a smaller size.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import types
import typing
from pathlib import Path
from typing import Any, Iterable, Union

import yaml

from pmv.config.checks import type_hint, validate
from pmv.config.schema import Config
from pmv.errors import ConfigError
from pmv.utils import atomic_write_text

BASE_KEY = "_base_"
SCALE_KEY = "_scale_sizes_"
# The spatial sizes a ``_scale_sizes_`` layer scales (section, key); 0 (e.g. "no decoder resize") stays 0.
SIZE_KEYS = (("transform", "jitter_scales"), ("transform", "train_crop"), ("test", "short_side"), ("test", "crop"),
             ("data", "decode_short_side"))
_MAX_FILES_SEARCHED = 5000  # bound the closest-name search in big folders


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def closest_file(path: str | os.PathLike) -> Path | None:
    """The existing YAML file whose path is most like ``path``, searched under its nearest existing folder."""
    path = Path(os.path.abspath(path))
    folder = path.parent
    while not folder.is_dir() and folder != folder.parent:
        folder = folder.parent
    wanted = str(path.relative_to(folder))
    candidates: list[str] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        candidates += [os.path.relpath(os.path.join(root, f), folder) for f in files if f.endswith((".yaml", ".yml"))]
        if len(candidates) > _MAX_FILES_SEARCHED:
            break
    match = difflib.get_close_matches(wanted, candidates, n=1, cutoff=0.6)
    return folder / match[0] if match else None


def _read_yaml(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        near = closest_file(path)
        hint = f"; did you mean {_display(near)}?" if near else ""
        raise ConfigError(f"config file not found: {_display(path)}{hint}") from None
    except IsADirectoryError:
        raise ConfigError(f"{_display(path)} is a folder; give a recipe file, e.g. {_display(path)}/default.yaml") from None
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of sections (data:, model:, ...), not {type(data).__name__}")
    return data


def _deep_merge(base: dict, update: dict) -> dict:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _scaled(value: Any, factor: float, multiple: int) -> Any:
    if isinstance(value, list):
        return [_scaled(v, factor, multiple) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return max(multiple, math.floor(value * factor / multiple + 0.5) * multiple)
    return value  # 0 ("off") and values of the wrong type (reported by validation) stay as they are


def scale_sizes(data: dict, spec: Any) -> dict:
    """``data`` with the :data:`SIZE_KEYS` (set in it or left at their defaults) scaled by ``spec``."""
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        spec = {"factor": spec}
    factor, multiple = (spec.get("factor"), spec.get("multiple", 1)) if isinstance(spec, dict) else (None, None)
    if not isinstance(factor, (int, float)) or factor <= 0 or not isinstance(multiple, int) or multiple < 1:
        raise ConfigError(f"{SCALE_KEY} must be {{factor: F > 0, multiple: M >= 1}}, e.g. {{factor: 0.5, multiple: 32}};"
                          f" got {spec!r}")
    defaults = config_to_dict(Config())
    data = dict(data)
    for section, key in SIZE_KEYS:
        values = dict(data.get(section) or {}) if isinstance(data.get(section, {}), dict) else None
        if values is None:
            continue  # a section given as a scalar: validation names it
        values[key] = _scaled(values.get(key, defaults[section][key]), factor, multiple)
        data[section] = values
    return data


def _stack(merged: dict, layer: dict) -> dict:
    """``layer`` merged over ``merged``, after its ``_scale_sizes_`` (if any) is applied to what lies beneath."""
    layer = dict(layer)
    if SCALE_KEY in layer:
        merged = scale_sizes(merged, layer.pop(SCALE_KEY))
    return _deep_merge(merged, layer)


def read_recipe(path: str | os.PathLike, _seen: tuple[Path, ...] = ()) -> dict:
    """The raw mapping of a recipe with its ``_base_`` chain merged in (bases first).

    The file's own ``_scale_sizes_`` is kept in the result: it applies to whatever the recipe is stacked on."""
    path = Path(path).resolve()
    if path in _seen:
        chain = " -> ".join(str(p) for p in (*_seen, path))
        raise ConfigError(f"config files extend each other in a loop: {chain}")
    data = _read_yaml(path)
    bases = data.pop(BASE_KEY, [])
    scale = data.pop(SCALE_KEY, None)
    if isinstance(bases, str):
        bases = [bases]
    merged: dict = {}
    for base in bases:
        merged = _stack(merged, read_recipe(path.parent / base, (*_seen, path)))
    merged = _deep_merge(merged, data)
    if scale is not None:
        merged[SCALE_KEY] = scale
    return merged


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"data.train_crop=[256,192]"`` -> (["data", "train_crop"], [256, 192])."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override {text!r} must look like section.key=value (e.g. train.epochs=5)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def _closest(name: str, options: Iterable[str], prefix: str = "") -> str:
    options = list(options)
    match = difflib.get_close_matches(name, options, n=1, cutoff=0.5)
    if match:
        return f"; did you mean {prefix + match[0]!r}?"
    return f"; valid keys: {', '.join(prefix + o for o in sorted(options))}"


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as err:
                errors.append(err)
        raise errors[0]
    if origin is list:
        (item_type,) = typing.get_args(tp) or (Any,)
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be a list of {_type_name(item_type)}, got {value!r}")
        return [_coerce(v, item_type, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # e.g. subset=400 typed on a command line
    raise ConfigError(f"{where} must be {_type_name(tp)}, got {value!r} ({type(value).__name__})")


def _build(cls: type, data: dict, where: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in fields:
            prefix = f"{where}." if where else ""
            raise ConfigError(f"unknown config key {path!r}{_closest(str(key), fields, prefix)}")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                raise ConfigError(f"{path!r} is a section; give it keys ({', '.join(fields_of(tp))}), not {value!r}")
            kwargs[key] = _build(tp, value, path)
        else:
            try:
                kwargs[key] = _coerce(value, tp, repr(path))
            except ConfigError as err:
                raise ConfigError(f"{err}{type_hint(cls, key, path, value)}") from None
    return cls(**kwargs)


def fields_of(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def config_from_dict(data: dict) -> Config:
    """Validate a nested mapping into a :class:`Config`: unknown keys, wrong types and values outside the
    accepted range or choices raise ConfigError naming the dotted key."""
    data = dict(data)
    if SCALE_KEY in data:  # an overlay loaded on its own scales the defaults
        data = scale_sizes({k: v for k, v in data.items() if k != SCALE_KEY}, data[SCALE_KEY])
    return validate(_build(Config, data, ""))


def apply_overrides(data: dict, overrides: Iterable[str]) -> dict:
    data = dict(data)
    for text in overrides:
        keys, value = parse_override(text)
        node = data
        for key in keys[:-1]:
            child = node.get(key)
            child = dict(child) if isinstance(child, dict) else {}
            node[key] = child
            node = child
        node[keys[-1]] = value
    return data


def resolve_recipe(
    path: str | os.PathLike | None = None, overrides: Iterable[str] = (), overlays: Iterable[str | os.PathLike] = ()
) -> dict:
    """The raw mapping of a recipe, with each overlay file stacked on it in order, then the overrides."""
    data = read_recipe(path) if path else {}
    for overlay in overlays:
        data = _stack(data, read_recipe(overlay))
    return apply_overrides(data, overrides)


def shipped_config(relative: str) -> Path:
    """A config file that ships with pmv (``configs/smoke.yaml``): under the working folder, else beside the
    pmv sources (a checkout or an editable install)."""
    import pmv

    candidates = [Path.cwd() / relative, Path(pmv.__file__).resolve().parents[2] / relative]
    for path in candidates:
        if path.is_file():
            return path
    raise ConfigError(f"cannot find {relative} (looked in {' and '.join(str(c) for c in candidates)}); run from the "
                      "pmv checkout, or pass the file's path")


def load_config(
    path: str | os.PathLike | None = None,
    overrides: Iterable[str] = (),
    overlays: Iterable[str | os.PathLike] = (),
) -> Config:
    """The validated config of a recipe file (or the defaults when ``path`` is None), with ``overlays`` (e.g.
    ``configs/smoke.yaml``) stacked on it and then the command-line ``overrides``."""
    data = resolve_recipe(path, overrides, overlays)
    try:
        return config_from_dict(data)
    except ConfigError as err:
        if path:
            raise ConfigError(f"{path}: {err}") from None
        raise


def config_to_dict(config: Any) -> dict:
    return dataclasses.asdict(config)


def dump_config(config: Config) -> str:
    return yaml.safe_dump(config_to_dict(config), sort_keys=False)


def save_config(config: Config, path: str | os.PathLike) -> None:
    """Write the resolved config as YAML, atomically (temporary file, then rename)."""
    atomic_write_text(path, dump_config(config))
