"""From config to objects: the model, its weights, the datasets and the loaders a run needs.

Each function takes the config sections it uses. Model options left unset (``None``) in ``model:`` are not passed,
so the registered builder's own defaults (the published hyper-parameters) apply.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn

from pmv.config import Config, DataConfig, ModelConfig, TestConfig, TransformConfig
from pmv.errors import ConfigError

log = logging.getLogger(__name__)

# ModelConfig fields that are builder options (passed only when set).
MODEL_OPTIONS = ("dropout", "drop_path", "act_checkpoint", "checkpoint_blocks")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def model_options(model_cfg: ModelConfig) -> dict[str, Any]:
    """The builder options a recipe sets; unset ones keep the builder's defaults."""
    options = {key: getattr(model_cfg, key) for key in MODEL_OPTIONS if getattr(model_cfg, key) is not None}
    options.update(model_cfg.options)
    return options


def build_model(model_cfg: ModelConfig, input_size: Sequence[int]) -> nn.Module:
    """The configured model for clips of ``input_size`` (T, H, W), with optional pretrained weights."""
    from pmv.models.registry import create_model

    model = create_model(model_cfg.name, num_classes=model_cfg.num_classes, input_size=tuple(input_size),
                         **model_options(model_cfg))
    if model_cfg.pretrained:
        load_weights(model, model_cfg.pretrained, strict=False, allow_head_mismatch=True)
    return model


def train_input_size(config: Config) -> tuple[int, int, int]:
    return (config.data.num_frames, *config.transform.train_crop)


def test_input_size(config: Config) -> tuple[int, int, int]:
    return (config.data.num_frames, *config.test.crop)


def load_weights(model: nn.Module, path_or_state: Any, *, strict: bool = True, allow_head_mismatch: bool = False):
    """Load pmv, PySlowFast or UniFormer weights through the zoo's loader (which adapts foreign layouts)."""
    from pmv.models.checkpoint import load_checkpoint

    return load_checkpoint(path_or_state, model, strict=strict, allow_head_mismatch=allow_head_mismatch)


def load_trained_weights(model: nn.Module, state: dict | None, path: str | Path, *, use_ema: bool = False):
    """Strictly load a pmv checkpoint's weights (``state``; its EMA copy with ``use_ema``), or, when ``state`` is
    None, a foreign (PySlowFast/UniFormer) file at ``path``."""
    from pmv.errors import CheckpointError

    if state is None:
        return load_weights(model, str(path), strict=True)
    weights = state
    if use_ema:
        if not state.get("ema"):
            raise CheckpointError(f"{path} has no EMA weights (train.ema_decay was 0); drop --ema")
        weights = {**state, "model": state["ema"]}
    return load_weights(model, weights, strict=True)


def build_datasets(data: DataConfig, transform: TransformConfig, test: TestConfig):
    """(train, val): val is one centre view per video with the test sizing, or None without a val list."""
    from pmv.data.annotations import list_file
    from pmv.data.dataset import build_test_dataset, build_train_dataset, validation_views

    train_set = build_train_dataset(data, transform, split="train")
    val_list = list_file(data, "val")
    if not val_list.is_file():
        log.warning("no val list (%s); training without validation", val_list)
        return train_set, None
    return train_set, build_test_dataset(data, validation_views(test), split="val")


def make_loader(dataset, *, batch_size: int, sampler, num_workers: int, seed: int, drop_last: bool,
                persistent: bool = True):
    """A loader over ``sampler`` (the data package's seeded-worker loader; it seeds per rank itself)."""
    from pmv.data.loader import build_loader

    return build_loader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers, seed=seed,
                        drop_last=drop_last, sampler=sampler, persistent_workers=persistent and num_workers > 0)


# Keys older pmv versions stored in checkpoints and that no longer exist (the setting moved to the command line).
RETIRED_KEYS = {"data": ("backend",), "test": ("view_sweep", "checkpoint")}


def config_for_checkpoint(state: dict | None, config_path: str | None, overrides: Sequence[str]) -> Config:
    """The config of a test: the recipe file when given, else the one stored in the checkpoint; then overrides."""
    from pmv.config import apply_overrides, config_from_dict, load_config

    if config_path:
        return load_config(config_path, overrides)
    if state is None or not isinstance(state.get("config"), dict):
        raise ConfigError("this checkpoint holds no pmv config; pass --config RECIPE.yaml")
    stored = {section: dict(values) if isinstance(values, dict) else values
              for section, values in state["config"].items()}
    for section, keys in RETIRED_KEYS.items():
        for key in keys:
            if isinstance(stored.get(section), dict):
                stored[section].pop(key, None)
    return config_from_dict(apply_overrides(stored, overrides))


def run_dir_of(checkpoint: str | Path) -> Path:
    """The run folder of a checkpoint (``<run>/checkpoints/x.pt`` -> ``<run>``)."""
    from pmv.engine.checkpointing import CHECKPOINT_DIR

    path = Path(checkpoint)
    return path.parent.parent if path.parent.name == CHECKPOINT_DIR else path.parent
