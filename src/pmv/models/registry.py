"""Model registry: one registered builder per variant, ``create_model(name, **overrides)``.

Builders live one file per family (``x3d.py``, ``mvit.py``...) and register themselves with ``@register_model``.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Callable

import torch.nn as nn

from pmv.errors import PmvError

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
# Family modules imported on first use of the registry, so registration needs no import by the caller.
FAMILY_MODULES: list[str] = [
    "pmv.models.mvit",
    "pmv.models.uniformer",
    "pmv.models.x3d",
    "pmv.models.slowfast",
    "pmv.models.tiny",
]


class UnknownModelError(PmvError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    if fn.__name__ in _REGISTRY and _REGISTRY[fn.__name__] is not fn:
        raise ValueError(f"model {fn.__name__!r} is registered twice")
    _REGISTRY[fn.__name__] = fn
    return fn


def _load_families() -> None:
    for module in FAMILY_MODULES:
        importlib.import_module(module)


def list_models() -> list[str]:
    _load_families()
    return sorted(_REGISTRY)


def get_builder(name: str) -> Callable[..., nn.Module]:
    _load_families()
    if name not in _REGISTRY:
        match = difflib.get_close_matches(name, _REGISTRY, n=1)
        hint = f"did you mean {match[0]!r}?" if match else f"known models: {', '.join(sorted(_REGISTRY))}"
        raise UnknownModelError(f"unknown model {name!r}; {hint}")
    return _REGISTRY[name]


def create_model(name: str, num_classes: int = 400, input_size: tuple[int, int, int] = (16, 224, 224), **overrides):
    """Build a registered model. ``input_size`` is (T, H, W), used by models whose layout depends on it."""
    return get_builder(name)(num_classes=num_classes, input_size=tuple(input_size), **overrides)
