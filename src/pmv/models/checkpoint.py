"""Load weights from PySlowFast, UniFormer and pmv checkpoints, with a strict, readable key/shape check.

Accepted files (all read with ``torch.load(..., weights_only=True)``, so no code in the file runs):

* PySlowFast ``.pyth``: ``{"model_state": state_dict, "epoch": ..., "optimizer_state": ..., "cfg": ...}``.
* UniFormer ``.pth``: ``{"model": state_dict}`` or a plain state dict.
* pmv's own checkpoints (written by the engine): ``{"model": state_dict, "config": ..., "class_names": [...]}``.
* A bare ``state_dict`` (also under a ``"state_dict"`` key).

``module.`` (DDP/DataParallel) and ``_orig_mod.`` (``torch.compile``) prefixes are stripped. Parameter names of pmv
models equal the reference layouts, except where :data:`KEY_RENAMES` maps them: that table is the single place for
renames. Before the check, ``model.adapt_state_dict(state_dict)`` is called when the model defines it (MViT resamples
relative-position tables made at another input size).

A class-count mismatch of the classifier (fine-tuning a 400-class checkpoint on 10 classes) re-initialises the
classifier with a warning when ``allow_head_mismatch`` is on; every other difference raises :class:`CheckpointError`
under ``strict`` with the missing, unexpected and mismatched keys and their shapes.
"""

from __future__ import annotations

import argparse
import logging
import os
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn as nn

from pmv.errors import CheckpointError
from pmv.utils import atomic_output, text_file_kind

logger = logging.getLogger(__name__)

# The one rename table: model class name -> [(regex on the checkpoint key, replacement)], applied in order after
# prefix stripping. pmv's X3D, SlowFast and AVSlowFast keys equal PySlowFast's, so they need no entry.
KEY_RENAMES: dict[str, list[tuple[str, str]]] = {}

# Prefixes added by wrappers, never part of the model's own names.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
# Buffers older checkpoints may lack; the model keeps its own value (BatchNorm's step counter, unused by default).
_OPTIONAL_SUFFIXES = ("num_batches_tracked",)
_REPORT_LIMIT = 20


@dataclass
class LoadReport:
    """What :func:`load_checkpoint` did. ``ok`` is True when nothing was missing, unexpected or mismatched."""

    source: str
    format: str  # "pyslowfast" | "pmv" | "uniformer" | "state_dict"
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)  # key, file, model
    reinitialized: list[str] = field(default_factory=list)
    epoch: int | None = None
    class_names: list[str] | None = None
    config: Any = None

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self) -> str:
        lines = [f"checkpoint {self.source} ({self.format}): {len(self.loaded)} tensors loaded"]
        if self.reinitialized:
            lines.append(f"  re-initialised (class count differs): {', '.join(self.reinitialized)}")
        lines += _listing("missing in checkpoint", self.missing, self.model_shapes)
        lines += _listing("unexpected in checkpoint", self.unexpected, self.file_shapes)
        if self.mismatched:
            lines.append(f"  shape mismatch ({len(self.mismatched)}):")
            for key, file_shape, model_shape in self.mismatched[:_REPORT_LIMIT]:
                lines.append(f"    {key}: checkpoint {list(file_shape)} vs model {list(model_shape)}")
            if len(self.mismatched) > _REPORT_LIMIT:
                lines.append(f"    ... and {len(self.mismatched) - _REPORT_LIMIT} more")
        return "\n".join(lines)

    # Shapes for the report, filled by load_checkpoint.
    model_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict, repr=False)
    file_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict, repr=False)


def _listing(title: str, keys: list[str], shapes: Mapping[str, tuple[int, ...]]) -> list[str]:
    if not keys:
        return []
    lines = [f"  {title} ({len(keys)}):"]
    lines += [f"    {key} {list(shapes.get(key, ()))}" for key in keys[:_REPORT_LIMIT]]
    if len(keys) > _REPORT_LIMIT:
        lines.append(f"    ... and {len(keys) - _REPORT_LIMIT} more")
    return lines


# How torch.save output starts: a zip archive (torch >= 1.6), a legacy pickle stream, or the oldest tar format.
_TORCH_HEADERS = (b"PK\x03\x04", b"\x80")


def _is_torch_file(path: Path) -> bool:
    with open(path, "rb") as handle:
        head = handle.read(512)
    return head.startswith(_TORCH_HEADERS) or head[257:262] == b"ustar"


def _first_sentence(err: BaseException) -> str:
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return text.split(". ")[0].rstrip(".")  # torch's zip errors go on for five sentences


def read_checkpoint_file(path: str | os.PathLike) -> dict:
    """``torch.load`` a checkpoint safely onto the CPU; unreadable or non-checkpoint files raise CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}; check the path (model.pretrained / --checkpoint)")
    # Say what a file that is not a checkpoint at all is, instead of torch.load's unpickling noise.
    if not _is_torch_file(path):
        kind = text_file_kind(path) or "neither a PyTorch zip archive nor a pickle file"
        hint = {"a YAML config": "; pass configs with --config, and a .pt/.pyth/.pth file as the checkpoint",
                "an empty file": "; it was probably cut off while being written or copied: copy it again"}
        raise CheckpointError(f"{path} is not a checkpoint: it is {kind}{hint.get(kind, '')}")
    try:
        # Training scripts often store their argparse options next to the weights; those are plain data.
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        if found:
            raise CheckpointError(
                f"cannot read checkpoint {path} safely: it stores a Python object of type {found.group(1)} besides "
                "the weights; re-save only the weights, e.g. torch.save({'model': model.state_dict()}, path)"
            ) from err
        raise CheckpointError(
            f"cannot read checkpoint {path}: the file is damaged (corrupt or truncated: {_first_sentence(err)}); "
            "download or copy it again"
        ) from err
    except Exception as err:  # torch.load on a damaged file raises many kinds (EOFError, IndexError, zip errors...)
        raise CheckpointError(
            f"cannot read checkpoint {path}: the file is damaged (corrupt or truncated: {_first_sentence(err)}); "
            "download or copy it again"
        ) from err
    if not isinstance(obj, dict):
        raise CheckpointError(
            f"checkpoint {path} holds a {type(obj).__name__}, not a dict of weights; "
            "expected a PySlowFast .pyth, a UniFormer .pth, a pmv checkpoint or a state dict"
        )
    return obj


def extract_state_dict(obj: Mapping, source: str = "<state dict>") -> tuple[dict[str, torch.Tensor], str]:
    """Find the model weights in a loaded checkpoint; return (state dict without wrapper prefixes, format name)."""
    if "model_state" in obj:
        state, fmt = obj["model_state"], "pyslowfast"
    elif "model" in obj and isinstance(obj["model"], Mapping):
        state = obj["model"]
        fmt = "pmv" if ("config" in obj or "class_names" in obj) else "uniformer"
    elif "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        state, fmt = obj["state_dict"], "state_dict"
    elif obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        state, fmt = obj, "state_dict"
    else:
        keys = ", ".join(sorted(map(str, obj))[:10]) or "none"
        raise CheckpointError(
            f"no model weights in {source}: expected a 'model_state' (PySlowFast), 'model' (pmv/UniFormer) or "
            f"'state_dict' entry, or a plain state dict; top-level keys: {keys}"
        )
    tensors = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            continue
        tensors[_strip_wrappers(str(key))] = value
    if not tensors:
        raise CheckpointError(f"the weights entry of {source} holds no tensors; the checkpoint is empty or damaged")
    return tensors, fmt


def _strip_wrappers(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix) :], True
    return key


def _apply_renames(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    rules = KEY_RENAMES.get(type(model).__name__, [])
    if not rules:
        return state
    renamed = {}
    for key, value in state.items():
        for pattern, replacement in rules:
            key = re.sub(pattern, replacement, key)
        renamed[key] = value
    return renamed


def classifier_keys(model: nn.Module) -> set[str]:
    """State-dict keys of the final classifier: ``model.classifier_keys`` if set, else the last ``nn.Linear``
    with ``model.num_classes`` outputs (else the last ``nn.Linear``)."""
    explicit = getattr(model, "classifier_keys", None)
    if explicit:
        return set(explicit)
    linears = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    num_classes = getattr(model, "num_classes", None)
    candidates = [name for name, m in linears if m.out_features == num_classes] if num_classes else []
    if not candidates and linears:
        candidates = [linears[-1][0]]
    if not candidates:
        return set()
    name = candidates[-1]
    module = model.get_submodule(name)
    return {f"{name}.{param}" for param, _ in module.named_parameters(recurse=False)}


def _reinitialize(model: nn.Module, keys: set[str]) -> None:
    """Fresh classifier weights (normal std ``model.head_init_std`` or 0.01, zero bias, as PySlowFast)."""
    std = float(getattr(model, "head_init_std", 0.01))
    params = dict(model.named_parameters())
    with torch.no_grad():
        for key in keys:
            if key.endswith("bias"):
                params[key].zero_()
            else:
                params[key].normal_(0.0, std)


def load_checkpoint(
    path_or_state: str | os.PathLike | Mapping,
    model: nn.Module,
    *,
    strict: bool = True,
    allow_head_mismatch: bool = True,
) -> LoadReport:
    """Load weights into ``model`` (in place) and return a :class:`LoadReport`.

    ``path_or_state``: a file path, or an already-loaded checkpoint dict / state dict.
    ``strict``: any missing, unexpected or mismatched key raises :class:`CheckpointError` naming them.
    ``allow_head_mismatch``: a classifier whose class count differs is re-initialised (warning) instead.
    """
    if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        model = model.module
    if isinstance(path_or_state, Mapping):
        source, obj = "<in-memory checkpoint>", path_or_state
    else:
        source, obj = str(path_or_state), read_checkpoint_file(path_or_state)
    state, fmt = extract_state_dict(obj, source)
    state = _apply_renames(model, state)
    adapt = getattr(model, "adapt_state_dict", None)
    if callable(adapt):
        state = adapt(state)

    model_state = model.state_dict()
    report = LoadReport(source=source, format=fmt)
    report.model_shapes = {k: tuple(v.shape) for k, v in model_state.items()}
    report.file_shapes = {k: tuple(v.shape) for k, v in state.items()}
    epoch = obj.get("epoch") if isinstance(obj, Mapping) else None
    report.epoch = int(epoch) if isinstance(epoch, (int, float)) and not isinstance(epoch, bool) else None
    names = obj.get("class_names") if isinstance(obj, Mapping) else None
    report.class_names = list(names) if isinstance(names, (list, tuple)) else None
    report.config = obj.get("config") if isinstance(obj, Mapping) else None

    report.missing = [k for k in model_state if k not in state and not k.endswith(_OPTIONAL_SUFFIXES)]
    report.unexpected = [k for k in state if k not in model_state]
    report.mismatched = [
        (k, tuple(state[k].shape), tuple(v.shape))
        for k, v in model_state.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]

    head = classifier_keys(model)
    head_mismatch = {k for k, _, _ in report.mismatched if k in head}
    if allow_head_mismatch and head_mismatch:
        # Only the class dimension may differ; a head of another width means another architecture.
        same_width = all(
            state[k].shape[1:] == model_state[k].shape[1:] for k in head_mismatch if state[k].ndim == model_state[k].ndim
        )
        if same_width:
            file_classes = state[sorted(head_mismatch)[0]].shape[0]
            report.reinitialized = sorted(head & set(model_state))
            report.mismatched = [m for m in report.mismatched if m[0] not in head]
            logger.warning(
                "checkpoint %s has %d classes, the model %d: re-initialising the classifier (%s) for fine-tuning",
                source,
                file_classes,
                model_state[sorted(head_mismatch)[0]].shape[0],
                ", ".join(report.reinitialized),
            )

    if strict and not report.ok:
        raise CheckpointError(
            f"checkpoint {source} does not fit {type(model).__name__}:\n{report.summary()}\n"
            "fix: use the checkpoint made for this model and these model options (model.name, input size, "
            "number of classes), or load with strict=False to take only the matching tensors"
        )

    skip = {k for k, _, _ in report.mismatched} | set(report.reinitialized)
    to_load = {k: v for k, v in state.items() if k in model_state and k not in skip}
    model.load_state_dict(to_load, strict=False)
    if report.reinitialized:
        _reinitialize(model, set(report.reinitialized))
    report.loaded = sorted(to_load)
    if not report.ok:
        logger.warning("partial load:\n%s", report.summary())
    return report


def save_pyslowfast_checkpoint(model: nn.Module, path: str | os.PathLike, epoch: int = 0) -> Path:
    """Write ``{"model_state": ..., "epoch": ...}`` (PySlowFast's ``.pyth`` layout) atomically; return the path."""
    if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        model = model.module
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with atomic_output(path) as tmp:
        torch.save({"model_state": state, "epoch": int(epoch)}, tmp)
    return path


__all__ = [
    "KEY_RENAMES",
    "LoadReport",
    "classifier_keys",
    "extract_state_dict",
    "load_checkpoint",
    "read_checkpoint_file",
    "save_pyslowfast_checkpoint",
]
