import math

import pytest
import torch
import torch.nn as nn

from pmv.config import OptimConfig
from pmv.config import load_config
from pmv.engine.optim import build_optimizer, build_schedule, lr_scale_factor, param_groups
from pmv.errors import ConfigError


def seed_lr(epoch, *, base, start, end, warmup, max_epoch, after_warmup):
    """The seed's lr_policy written out independently: cosine with offset, linear warmup to cos(WARMUP)."""
    def cosine(e):
        offset = warmup if after_warmup else 0.0
        return end + (base - end) * (math.cos(math.pi * (e - offset) / (max_epoch - offset)) + 1.0) * 0.5

    if epoch < warmup:
        alpha = (cosine(warmup) - start) / warmup
        return epoch * alpha + start
    return cosine(epoch)


@pytest.mark.parametrize("after_warmup", [True, False])
def test_schedule_matches_seed_formula_per_iteration(after_warmup):
    optim = OptimConfig(base_lr=1e-4, warmup_start_lr=1e-6, end_lr=1e-6, warmup_epochs=30,
                        cosine_after_warmup=after_warmup, lr_scaling="nodes")
    schedule = build_schedule(optim, 200, num_nodes=4)
    steps_per_epoch = 7
    for epoch in (0, 1, 29, 30, 31, 100, 199):
        for it in range(steps_per_epoch):
            e = epoch + it / steps_per_epoch
            expected = seed_lr(e, base=4e-4, start=4e-6, end=4e-6, warmup=30, max_epoch=200, after_warmup=after_warmup)
            assert schedule.lr_at(e) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_x3d_schedule_values():
    # X3D: 0.05 x 4 nodes, warmup from 0.01 x 4 over 35 epochs, cosine over all 300 epochs to 0.
    optim = OptimConfig(method="sgd", base_lr=0.05, warmup_start_lr=0.01, end_lr=0.0, warmup_epochs=35,
                        cosine_after_warmup=False, lr_scaling="nodes")
    s = build_schedule(optim, 300, num_nodes=4)
    assert s.lr_at(0) == pytest.approx(0.04)
    cos35 = 0.2 * (1 + math.cos(math.pi * 35 / 300)) / 2
    assert s.lr_at(35) == pytest.approx(cos35)
    assert s.lr_at(17.5) == pytest.approx(0.04 + 17.5 * (cos35 - 0.04) / 35)
    assert s.lr_at(300) == pytest.approx(0.0, abs=1e-12)
    assert s.lr_at(150) == pytest.approx(0.1)


def test_lr_scaling_rules():
    o = OptimConfig(lr_scaling="sqrt_nodes")
    assert lr_scale_factor(o, num_nodes=4, global_batch=1) == 2.0
    o = OptimConfig(lr_scaling="batch", reference_batch=256)
    assert lr_scale_factor(o, num_nodes=1, global_batch=512) == 2.0
    assert lr_scale_factor(OptimConfig(lr_scaling="none"), num_nodes=8, global_batch=9) == 1.0
    with pytest.raises(ConfigError, match="lr_scaling"):  # checked once, when the config loads
        load_config(overrides=["optim.lr_scaling=gpus"])


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(3, 4, 3, bias=True)
        self.bn = nn.BatchNorm3d(4)
        self.norm = nn.LayerNorm(4)
        self.fc = nn.Linear(4, 2)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, 4))
        self.scale = nn.Parameter(torch.ones(4))
        self.frozen = nn.Parameter(torch.ones(3), requires_grad=False)


def names_of(model, group):
    ids = {id(p) for p in group["params"]}
    return sorted(n for n, p in model.named_parameters() if id(p) in ids)


def test_weight_decay_groups_transformer_recipe():
    model = Net()
    groups = {g["name"]: g for g in param_groups(model, OptimConfig(weight_decay=0.05, zero_wd_1d=True))}
    assert names_of(model, groups["decay"]) == ["cls_token", "conv.weight", "fc.weight"]
    assert groups["decay"]["weight_decay"] == 0.05
    assert names_of(model, groups["no_decay"]) == ["conv.bias", "fc.bias", "scale"]
    assert groups["no_decay"]["weight_decay"] == 0.0
    assert names_of(model, groups["norm"]) == ["bn.bias", "bn.weight", "norm.bias", "norm.weight"]
    assert groups["norm"]["weight_decay"] == 0.0


def test_weight_decay_groups_x3d_recipe_decays_biases_not_bn():
    model = Net()
    optim = OptimConfig(method="sgd", weight_decay=5e-5, zero_wd_1d=False, norm_weight_decay=0.0)
    groups = {g["name"]: g for g in param_groups(model, optim)}
    assert "no_decay" not in groups
    assert names_of(model, groups["decay"]) == ["cls_token", "conv.bias", "conv.weight", "fc.bias", "fc.weight", "scale"]
    assert names_of(model, groups["norm"]) == ["bn.bias", "bn.weight", "norm.bias", "norm.weight"]
    opt = build_optimizer(model, optim)
    assert isinstance(opt, torch.optim.SGD)
    assert opt.defaults["nesterov"] and opt.defaults["momentum"] == 0.9 and opt.defaults["dampening"] == 0


def test_adamw_and_unknown_method():
    opt = build_optimizer(Net(), OptimConfig(method="adamw", betas=[0.9, 0.95]))
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["betas"] == (0.9, 0.95)
    with pytest.raises(ConfigError, match="'optim.method' must be one of adamw, sgd"):
        load_config(overrides=["optim.method=lamb"])
