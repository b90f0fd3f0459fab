"""Parameter and FLOP counts per view, with ``torch.utils.flop_counter.FlopCounterMode``.

Convention: papers and model zoos built on PySlowFast/fvcore quote "GFLOPs" that are really multiply-accumulates
(MACs) / 1e9. ``FlopCounterMode`` counts 2 FLOPs per MAC, so :attr:`FlopReport.gflops` divides its total by 2 to be
comparable with the published tables; :attr:`FlopReport.flops` keeps the raw count. Attention models are counted
through their explicit ``softmax(QK^T)V`` path (``set_attention_impl("math")``), since fused SDPA kernels are not
always seen by the counter. Only matrix multiplies, convolutions and attention are counted (BatchNorm, activations, pooling and softmax are not), which is what fvcore
counts for these models up to about 1%.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from pmv.errors import ConfigError
from pmv.models.layers import InputSpec
from pmv.models.registry import create_model


@dataclass
class FlopReport:
    model: str
    input_size: tuple[int, int, int]  # T, H, W of the clip (one view)
    params: int  # trainable parameters
    flops: int  # FlopCounterMode's count: 2 per multiply-accumulate
    by_operator: dict[str, int] = field(default_factory=dict)

    @property
    def gflops(self) -> float:
        """Multiply-accumulates / 1e9, the "GFLOPs" of PySlowFast/fvcore model zoos."""
        return self.flops / 2 / 1e9

    @property
    def params_m(self) -> float:
        return self.params / 1e6


def parse_input_size(text: str) -> tuple[int, int, int]:
    """``"16x224x224"`` -> (16, 224, 224): frames x height x width."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX,]\s*(\d+)\s*[xX,]\s*(\d+)\s*", text)
    if not match or any(int(v) <= 0 for v in match.groups()):
        raise ConfigError(f"bad input size {text!r}; write frames x height x width, e.g. 16x224x224 or 16x256x192")
    t, h, w = (int(v) for v in match.groups())
    return t, h, w


def input_spec_of(model: nn.Module) -> InputSpec:
    """The model's :class:`InputSpec`, or a plain one-clip spec for models that do not declare one."""
    spec = getattr(model, "input_spec", None)
    return spec if isinstance(spec, InputSpec) else InputSpec()


def count_flops(model: nn.Module, inputs: tuple) -> tuple[int, dict[str, int]]:
    """FLOPs (2 per MAC) of one no-grad forward of ``model(*inputs)``, in total and per aten operator."""
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(*inputs)
    by_op = {str(op): int(n) for op, n in counter.get_flop_counts()["Global"].items()}
    return int(counter.get_total_flops()), by_op


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def model_flops(
    name: str, input_size: tuple[int, int, int] = (16, 224, 224), num_classes: int = 400, **options
) -> FlopReport:
    """Build ``name`` for ``input_size`` (T, H, W) and count parameters and FLOPs of one view, batch 1, eval mode.

    Runs on the meta device (shapes only: no memory, no arithmetic), which FlopCounterMode supports because it
    counts from shapes; falls back to the CPU for a model with an operator that has no meta implementation.
    """
    size = tuple(int(v) for v in input_size)
    for device in ("meta", "cpu"):
        try:
            with torch.device(device):
                model = create_model(name, num_classes=num_classes, input_size=size, **options).eval()
                if hasattr(model, "set_attention_impl"):
                    # FlopCounterMode has no formula for every fused attention kernel (CPU SDPA with a bias is
                    # missed); the explicit softmax(QK^T)V path has the same MACs and is fully counted.
                    model.set_attention_impl("math")
                inputs = input_spec_of(model).example_inputs(batch=1, input_size=size)
            flops, by_op = count_flops(model, inputs)
            break
        except (NotImplementedError, RuntimeError):
            if device == "cpu":
                raise
    return FlopReport(name, size, count_parameters(model), flops, by_op)


def parameter_count(name: str, num_classes: int = 400) -> int:
    """Trainable parameters of a registered model, built on the meta device (no memory, no init cost)."""
    try:
        with torch.device("meta"):
            model = create_model(name, num_classes=num_classes)
    except (NotImplementedError, RuntimeError):  # a model whose construction needs real tensors
        model = create_model(name, num_classes=num_classes)
    return count_parameters(model)


__all__ = ["FlopReport", "count_flops", "count_parameters", "input_spec_of", "model_flops", "parameter_count", "parse_input_size"]
