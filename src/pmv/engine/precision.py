"""Numeric precision: which autocast a run uses on which device."""

from __future__ import annotations

import contextlib
import logging

import torch

log = logging.getLogger(__name__)

def resolve_precision(precision: str, device: torch.device) -> str:
    """The precision a run really uses: fp16 autocast needs a GPU, so on a CPU it becomes bf16 (with a warning)."""
    if precision == "fp16" and device.type != "cuda":
        log.warning("fp16 autocast needs a GPU; using bf16 on %s", device.type)
        return "bf16"
    return precision


def autocast_context(device: torch.device, precision: str):
    """Autocast for ``bf16``/``fp16`` (fp16 only on GPU); a no-op for ``fp32``."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.float16 if precision == "fp16" and device.type == "cuda" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)
