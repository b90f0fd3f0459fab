"""Optimizers, weight-decay groups and the seed's learning-rate schedule.

The schedule is a pure function of the fractional epoch (``epoch + step / steps_per_epoch``), as in the seed's
``lr_policy.py``: linear warmup from ``warmup_start_lr`` to the cosine's value at the end of warmup, then a cosine
from ``base_lr`` to ``end_lr``. Because it is a pure function, resuming needs nothing but the step counter.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from pmv.config import OptimConfig
from pmv.config.schema import LR_SCALINGS, OPTIM_METHODS
from pmv.errors import ConfigError

log = logging.getLogger(__name__)


# Normalization layers whose affine parameters get ``norm_weight_decay`` (the seed's BN.WEIGHT_DECAY).
NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)


@dataclass(frozen=True)
class LrSchedule:
    """The learning rates after scaling; ``lr_at(epoch)`` is the seed's per-iteration formula."""

    base_lr: float
    warmup_start_lr: float
    end_lr: float
    warmup_epochs: float
    max_epoch: float
    cosine_after_warmup: bool = True

    def cosine(self, epoch: float) -> float:
        offset = self.warmup_epochs if self.cosine_after_warmup else 0.0
        span = self.max_epoch - offset
        if span <= 0:
            return self.base_lr
        progress = (epoch - offset) / span
        return self.end_lr + (self.base_lr - self.end_lr) * (1.0 + math.cos(math.pi * progress)) / 2.0

    def lr_at(self, epoch: float) -> float:
        if epoch < self.warmup_epochs:
            target = self.cosine(self.warmup_epochs)
            return self.warmup_start_lr + epoch * (target - self.warmup_start_lr) / self.warmup_epochs
        return self.cosine(epoch)


def lr_scale_factor(optim: OptimConfig, *, num_nodes: int, global_batch: int) -> float:
    """How much ``base_lr``, ``warmup_start_lr`` and ``end_lr`` are multiplied by for this launch.

    ``nodes``/``sqrt_nodes`` reproduce the seed's BASE_LR_SCALE_NUM_SHARDS(_BY_SQRT) (number of machines, not
    GPUs); ``batch`` is the linear rule ``global_batch / reference_batch``.
    """
    if optim.lr_scaling == "none":
        return 1.0
    if optim.lr_scaling == "nodes":
        return float(num_nodes)
    if optim.lr_scaling == "sqrt_nodes":
        return math.sqrt(num_nodes)
    if optim.lr_scaling == "batch":
        return global_batch / optim.reference_batch
    raise ValueError(f"optim.lr_scaling={optim.lr_scaling!r} is not one of {', '.join(LR_SCALINGS)}")


def build_schedule(optim: OptimConfig, max_epoch: float, *, num_nodes: int = 1, global_batch: int = 1) -> LrSchedule:
    factor = lr_scale_factor(optim, num_nodes=num_nodes, global_batch=global_batch)
    if factor != 1.0:
        log.info("learning rates scaled by %.4g (optim.lr_scaling=%s)", factor, optim.lr_scaling)
    return LrSchedule(
        base_lr=optim.base_lr * factor,
        warmup_start_lr=optim.warmup_start_lr * factor,
        end_lr=optim.end_lr * factor,
        warmup_epochs=optim.warmup_epochs,
        max_epoch=max_epoch,
        cosine_after_warmup=optim.cosine_after_warmup,
    )


def param_groups(model: nn.Module, optim: OptimConfig) -> list[dict]:
    """Split trainable parameters into decay groups the way the seed's ``construct_optimizer`` does.

    * parameters of normalization layers: ``norm_weight_decay`` (the seed's BN.WEIGHT_DECAY, 0 in every recipe);
    * with ``zero_wd_1d``, other biases and 1-D parameters: 0;
    * everything else: ``weight_decay``. X3D turns ``zero_wd_1d`` off, so its conv/linear biases decay.

    Empty groups are left out (torch optimizers reject them).
    """
    norm_params, no_decay, decay = [], [], []
    seen: set[int] = set()
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            if isinstance(module, NORM_TYPES):
                norm_params.append(param)
            elif optim.zero_wd_1d and (param.ndim <= 1 or name.endswith("bias")):
                no_decay.append(param)
            else:
                decay.append(param)
    groups = [
        {"params": decay, "weight_decay": optim.weight_decay, "name": "decay"},
        {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"},
        {"params": norm_params, "weight_decay": optim.norm_weight_decay, "name": "norm"},
    ]
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, optim: OptimConfig) -> torch.optim.Optimizer:
    """AdamW or SGD (momentum, Nesterov, no dampening) over :func:`param_groups`. The LR is set every step."""
    groups = param_groups(model, optim)
    if not groups:
        raise ConfigError("the model has no trainable parameters")
    method = optim.method
    if method == "adamw":
        return torch.optim.AdamW(groups, lr=optim.base_lr, betas=tuple(optim.betas), eps=1e-8)
    if method == "sgd":
        return torch.optim.SGD(
            groups, lr=optim.base_lr, momentum=optim.momentum, nesterov=optim.nesterov and optim.momentum > 0,
            dampening=0.0,
        )
    raise ValueError(f"optim.method={optim.method!r} is not one of {', '.join(OPTIM_METHODS)}")


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
