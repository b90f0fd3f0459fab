"""Training checkpoints: atomic writes, retention, validation on load, RNG states.

A pmv checkpoint is a dict saved with ``torch.save`` that ``torch.load(weights_only=True)`` can read::

    {"format": "pmv-checkpoint", "version": 1,
     "model": state_dict, "config": nested dict, "class_names": [...],
     "epoch": completed epochs, "step_in_epoch": optimizer steps done in the current epoch, "global_step": ...,
     "optimizer": ..., "scaler": ..., "ema": state_dict | None, "rng": [per-rank RNG states], "sampler": {...},
     "best_metric": float | None, "metrics": {...}}

Files live in ``<output_dir>/checkpoints/`` as ``checkpoint_e{epoch:05d}_s{step:07d}.pt``; ``best.pt`` is a copy
of the best one. A write goes to a hidden temporary file in the same folder, is fsynced, then renamed, so a crash
leaves either the old set of files or the new one. A file that does not load (truncated, foreign) is skipped with
a warning and the previous one is used.
"""

from __future__ import annotations

import logging
import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pmv.errors import CheckpointError
from pmv.models.checkpoint import read_checkpoint_file
from pmv.utils import atomic_output

log = logging.getLogger(__name__)

FORMAT = "pmv-checkpoint"
VERSION = 1
CHECKPOINT_DIR = "checkpoints"
BEST_NAME = "best.pt"
_NAME = re.compile(r"^checkpoint_e(\d{5,})_s(\d{7,})\.pt$")


def checkpoint_name(epoch: int, step_in_epoch: int) -> str:
    return f"checkpoint_e{epoch:05d}_s{step_in_epoch:07d}.pt"




def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file beside ``path``, fsync, then ``os.replace``."""
    path = Path(path)
    with atomic_output(path, fsync=True) as tmp:
        torch.save(obj, tmp)
    return path


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load and validate a pmv checkpoint; a missing, truncated or foreign file raises CheckpointError."""
    path = Path(path)
    state = read_checkpoint_file(path)  # missing, damaged or non-dict files raise CheckpointError there
    if not isinstance(state, dict) or state.get("format") != FORMAT or "model" not in state:
        raise CheckpointError(f"{path} is not a pmv training checkpoint (no 'format: {FORMAT}' entry); use "
                              "model.pretrained= to start from foreign weights")
    return state


def list_checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """The run's periodic checkpoints, oldest first (temporary files and ``best.pt`` excluded)."""
    folder = Path(output_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = _NAME.match(path.name)
        if match:
            found.append(((int(match.group(1)), int(match.group(2))), path))
    return [path for _, path in sorted(found)]


def latest_valid_checkpoint(output_dir: str | os.PathLike) -> tuple[Path, dict] | None:
    """The newest checkpoint of a run that loads cleanly, falling back past damaged ones with a warning."""
    for path in reversed(list_checkpoints(output_dir)):
        try:
            return path, read_checkpoint(path)
        except CheckpointError as err:
            log.warning("skipping damaged checkpoint: %s", err)
    return None


def prune_checkpoints(output_dir: str | os.PathLike, keep_last: int) -> None:
    """Delete all but the newest ``keep_last`` periodic checkpoints (``best.pt`` is a separate file)."""
    if keep_last <= 0:
        return
    for path in list_checkpoints(output_dir)[:-keep_last]:
        path.unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------------------------- RNG


def capture_rng_state() -> dict:
    """This process's RNG states (python, numpy, torch, CUDA) in a form ``weights_only`` loading accepts."""
    version, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    py_version, py_state, py_gauss = random.getstate()
    state = {
        "python": [py_version, list(py_state), py_gauss],
        "numpy": [version, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss),
                  float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    py_version, py_state, py_gauss = state["python"]
    random.setstate((py_version, tuple(py_state), py_gauss))
    version, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((version, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
        else:
            log.warning("checkpoint has CUDA RNG states for %d devices, this machine has %d: not restored",
                        len(cuda_states), torch.cuda.device_count())


# ------------------------------------------------------------------------------------------------ training state


def capture_run_rng(mixup: Any = None) -> dict:
    """This process's RNG states plus mixup's stream (item augmentation is keyed by the sampler, not a stream)."""
    state = capture_rng_state()
    if mixup is not None:
        version, internal, gauss = mixup.rng.getstate()
        state["mixup"] = [version, list(internal), gauss]
    return state


def restore_run_rng(state: dict, mixup: Any = None) -> None:
    restore_rng_state(state)
    if "mixup" in state and mixup is not None:
        version, internal, gauss = state["mixup"]
        mixup.rng.setstate((version, tuple(internal), gauss))


def training_checkpoint(learner, state, *, config: dict, class_names: list[str], rng: list[dict],
                        steps_per_epoch: int, world_size: int, metrics: dict) -> dict:
    """Everything a resumed run needs, as a dict ``torch.load(weights_only=True)`` can read."""
    return {
        "format": FORMAT, "version": VERSION,
        "model": learner.model.state_dict(), "config": config, "class_names": class_names,
        "epoch": state.epoch, "step_in_epoch": state.step_in_epoch, "global_step": state.global_step,
        "steps_per_epoch": steps_per_epoch, "world_size": world_size,
        "optimizer": learner.optimizer.state_dict(),
        "scaler": learner.scaler.state_dict() if learner.scaler.is_enabled() else None,
        "ema": learner.ema.module.state_dict() if learner.ema is not None else None,
        "rng": rng, "best_metric": state.best_top1, "best_loss": state.best_loss, "metrics": metrics,
    }


def restore_training(learner, checkpoint: dict, class_names: list[str]):
    """Load weights, optimizer, scaler and EMA into ``learner``; returns the saved ``TrainState`` fields."""
    saved_names = checkpoint.get("class_names")
    if class_names and saved_names and list(saved_names) != list(class_names):
        raise CheckpointError("the checkpoint was trained on other classes than this data's class names; "
                              "point train.output_dir at a new folder or fix data.list_dir")
    try:
        learner.model.load_state_dict(checkpoint["model"])
        learner.optimizer.load_state_dict(checkpoint["optimizer"])
    except (RuntimeError, ValueError, KeyError) as err:
        raise CheckpointError(f"the checkpoint to resume does not fit this model/optimizer ({str(err)[:300]}); "
                              "resume with the config it was trained with, or use a new train.output_dir") from None
    if checkpoint.get("scaler"):
        learner.scaler.load_state_dict(checkpoint["scaler"])
    if learner.ema is not None and checkpoint.get("ema"):
        learner.ema.module.load_state_dict(checkpoint["ema"])
    return {
        "epoch": int(checkpoint["epoch"]), "step_in_epoch": int(checkpoint["step_in_epoch"]),
        "global_step": int(checkpoint["global_step"]), "best_top1": checkpoint.get("best_metric"),
        "best_loss": float(checkpoint.get("best_loss", float("inf"))),
    }
