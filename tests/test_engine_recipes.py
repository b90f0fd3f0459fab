"""Every recipe in configs/ loads, carries the paper's hyper-parameters, and names options its model accepts."""

from pathlib import Path

import pytest
import torch

from pmv.config import load_config
from pmv.engine.optim import build_schedule
from pmv.engine.build import build_model

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
MODELS = ["x3d_m", "mvitv2_s", "uniformer_s"]
VARIANTS = ["shorter", "default", "rect_256x192", "rect_288x192"]


def recipe(model, variant):
    return CONFIGS / "pmv400" / model / f"{variant}.yaml"


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_paper_recipe_loads(model, variant):
    cfg = load_config(recipe(model, variant))
    assert cfg.model.name == model and cfg.model.num_classes == 400
    assert cfg.data.subset == "_pmv400" and cfg.data.num_frames == 16
    crop = {"shorter": [224, 224], "default": [224, 224], "rect_256x192": [256, 192], "rect_288x192": [288, 192]}
    assert cfg.transform.train_crop == crop[variant]
    assert cfg.transform.auto_adjust == variant.startswith("rect")
    assert bool(cfg.transform.scale_relative) == (variant == "default")
    assert cfg.transform.jitter_scales == [256, 320]
    assert cfg.optim.lr_scaling == "nodes"


def test_effective_hyper_parameters_on_four_nodes():
    """The seed's merged configs (seed_effective_configs.md) after scaling by 4 machines."""
    expected = {  # model: (per-GPU batch, epochs, base, warmup start, end, warmup, after warmup, method, views, crops)
        "mvitv2_s": (4, 200, 4e-4, 4e-6, 4e-6, 30, True, "adamw", 5, 1),
        "uniformer_s": (12, 100, 8e-4, 4e-6, 4e-6, 10, True, "adamw", 4, 1),
        "x3d_m": (8, 300, 0.2, 0.04, 0.0, 35, False, "sgd", 10, 3),
    }
    for model, (batch, epochs, base, start, end, warmup, after, method, views, crops) in expected.items():
        cfg = load_config(recipe(model, "shorter"))
        schedule = build_schedule(cfg.optim, cfg.train.epochs, num_nodes=4)
        assert (schedule.base_lr, schedule.warmup_start_lr, schedule.end_lr) == pytest.approx((base, start, end))
        assert (cfg.train.batch_size, cfg.train.epochs, cfg.optim.warmup_epochs) == (batch, epochs, warmup)
        assert cfg.optim.cosine_after_warmup == after and cfg.optim.method == method
        assert (cfg.test.num_temporal_views, cfg.test.num_spatial_views) == (views, crops)
    x3d = load_config(recipe("x3d_m", "shorter"))
    assert x3d.optim.zero_wd_1d is False and x3d.optim.weight_decay == 5e-5 and x3d.train.precise_bn
    assert x3d.test.crop == [256, 256] and not x3d.mixup.enable and x3d.transform.num_sample == 1
    mvit = load_config(recipe("mvitv2_s", "rect_288x192"))
    assert mvit.mixup.enable and mvit.transform.num_sample == 2 and mvit.optim.clip_grad_norm == 1.0
    assert mvit.test.crop == [224, 224] and mvit.train.loss == "soft_cross_entropy"
    uni = load_config(recipe("uniformer_s", "default"))
    assert uni.model.checkpoint_blocks == [0, 0, 1, 0] and uni.test.aggregation == "logits_sum"
    assert uni.test.short_side == 224 and uni.train.seed == 6666


def test_demo_recipe_loads():
    cfg = load_config(CONFIGS / "demo" / "tiny.yaml")
    assert cfg.model.name == "tiny" and not cfg.transform.random_flip


@pytest.mark.parametrize("model", MODELS)
def test_recipe_model_options_are_accepted(model):
    # Small input and few classes keep this fast; the options come from the recipe untouched.
    cfg = load_config(recipe(model, "rect_256x192"), ["model.num_classes=3"])
    net = build_model(cfg.model, (4, 64, 64) if model != "mvitv2_s" else (16, 256, 192))
    assert sum(p.numel() for p in net.parameters()) > 1_000_000


def test_minimal_recipe_gets_the_builders_published_defaults():
    # model: {name: ...} alone must not force the schema's values onto the builder.
    for name, dropout, drop_path in [("uniformer_s", 0.0, 0.1), ("mvitv2_s", 0.5, 0.2)]:
        cfg = load_config(overrides=[f"model.name={name}", "model.num_classes=3"])
        assert cfg.model.dropout is None and cfg.model.drop_path is None
        net = build_model(cfg.model, (16, 224, 224))
        head_dropouts = [m.p for name_, m in net.named_modules() if isinstance(m, torch.nn.Dropout) and "head" in name_]
        assert head_dropouts and head_dropouts[-1] == dropout, (name, head_dropouts)
        rates = [m.drop_prob for m in net.modules() if type(m).__name__ == "DropPath"]
        assert rates and abs(max(rates) - drop_path) < 1e-6, (name, max(rates))
