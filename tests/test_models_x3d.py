"""X3D: reference key layout, parameter count, rectangular inputs, logits, init, checkpointing, CLI."""

from __future__ import annotations

import json

import pytest
import torch
from shared_data import read_listing

from pmv.cli.main import main
from pmv.errors import ConfigError
from pmv.models import create_model
from pmv.models.flops import model_flops
from pmv.models.layers import DropPath, drop_path

SIZES = [(224, 224), (256, 192), (288, 192), (192, 256)]

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


@pytest.fixture(scope="module")
def x3d_small():
    torch.manual_seed(0)
    return create_model("x3d_m", num_classes=5)


def test_x3d_m_state_dict_equals_reference_listing():
    reference = read_listing("statedict_x3d_m.txt")
    model = create_model("x3d_m", num_classes=400)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert sorted(set(reference) - set(ours)) == []
    assert sorted(set(ours) - set(reference)) == []
    assert {k: v for k, v in ours.items() if reference[k] != v} == {}
    assert len(ours) == 568


@pytest.mark.parametrize("name", ["x3d_xs", "x3d_s", "x3d_m"])
def test_x3d_parameter_count(name):
    model = create_model(name, num_classes=400)
    assert sum(p.numel() for p in model.parameters()) == 3_794_322


@pytest.mark.parametrize("height,width", SIZES)
def test_x3d_forward_backward_portrait_and_landscape(x3d_small, height, width):
    model = x3d_small.train()
    model.zero_grad()
    clip = torch.randn(1, 3, 2, height, width)
    logits = model(clip)
    assert logits.shape == (1, 5)
    logits.sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    # The stem's conv always gets a non-zero gradient (its path never passes a zero-init gamma alone).
    assert model.s1.pathway0_stem.conv_xy.weight.grad.abs().sum() > 0


def test_x3d_full_length_clip_at_portrait_crop(x3d_small):
    model = x3d_small.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 16, 256, 192)).shape == (1, 5)


def test_x3d_returns_logits_in_eval_and_train(x3d_small):
    model = create_model("x3d_m", num_classes=3, dropout=0.0)
    with torch.no_grad():
        model.head.projection.weight.zero_()
        model.head.projection.bias.copy_(torch.tensor([2.0, -1.0, 0.5]))
    clip = torch.randn(2, 3, 2, 32, 32)
    for mode in (model.eval, model.train):
        mode()
        out = model(clip)
        # Exactly the bias: no softmax applied (softmax would give probabilities summing to 1).
        assert torch.allclose(out, torch.tensor([[2.0, -1.0, 0.5]] * 2))


def test_x3d_initialisation_follows_pyslowfast():
    model = create_model("x3d_m", num_classes=400)
    block = model.s3.pathway0_res1.branch2
    assert torch.count_nonzero(block.c_bn.weight) == 0  # zero-init last BN gamma of each residual branch
    assert torch.all(block.a_bn.weight == 1)
    std = model.head.projection.weight.std().item()
    assert 0.008 < std < 0.012 and torch.count_nonzero(model.head.projection.bias) == 0
    assert hasattr(model.s2.pathway0_res0.branch2, "se") and not hasattr(model.s2.pathway0_res1.branch2, "se")


def test_x3d_activation_checkpointing_gives_same_output_and_gradients():
    torch.manual_seed(1)
    plain = create_model("x3d_m", num_classes=4, dropout=0.0)
    ckpt = create_model("x3d_m", num_classes=4, dropout=0.0, act_checkpoint=True)
    ckpt.load_state_dict(plain.state_dict())
    clip = torch.randn(2, 3, 2, 32, 32)
    out_plain, out_ckpt = plain(clip), ckpt(clip)
    assert torch.allclose(out_plain, out_ckpt, atol=1e-6)
    out_plain.square().sum().backward()
    out_ckpt.square().sum().backward()
    for (name, a), (_, b) in zip(plain.named_parameters(), ckpt.named_parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-5, rtol=1e-4), name


def test_x3d_drop_path_only_in_training():
    torch.manual_seed(2)
    model = create_model("x3d_m", num_classes=4, dropout=0.0, drop_path=0.5)
    # Non-zero final gammas so that dropping a residual branch changes the output.
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm3d):
                module.weight.fill_(1.0)
    clip = torch.randn(2, 3, 2, 32, 32)
    model.eval()
    assert torch.equal(model(clip), model(clip))
    model.train()
    assert not torch.allclose(model(clip), model(clip))


def test_drop_path_zeroes_whole_samples_and_keeps_the_mean():
    torch.manual_seed(3)
    x = torch.ones(4000, 3, 2)
    out = drop_path(x, 0.25, training=True)
    per_sample = out.flatten(1)
    assert torch.all((per_sample == 0).all(1) | (per_sample == 1 / 0.75).all(1))
    assert abs(out.mean().item() - 1.0) < 0.05
    assert torch.equal(DropPath(0.25).eval()(x), x)


def test_unknown_model_option_is_a_config_error():
    with pytest.raises(ConfigError, match="no option 'depth_multiplier'"):
        create_model("x3d_m", num_classes=4, depth_multiplier=3)


def test_x3d_m_flops_match_published_figure():
    # X3D paper / PySlowFast zoo: 4.73 GFLOPs (multiply-accumulates) at 16x224x224.
    report = model_flops("x3d_m", (16, 224, 224))
    assert report.params == 3_794_322
    assert abs(report.gflops - 4.73) < 0.02


def test_cli_models_list(capsys):
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("x3d_m", "slowfast_r50", "avslowfast_r50", "tiny"):
        assert name in out
    assert "3,794,322" in out and "44,203,320" in out


def test_cli_models_flops_json_matches_library(capsys):
    assert main(["models", "flops", "x3d_m", "--input", "4x64x48", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    expected = model_flops("x3d_m", (4, 64, 48))
    assert record["input"] == [4, 64, 48]
    assert record["params"] == 3_794_322
    assert record["flops_counted"] == expected.flops
    assert record["gflops_mac"] == pytest.approx(expected.flops / 2e9)


def test_cli_models_flops_text_and_errors(capsys):
    assert main(["models", "flops", "tiny", "--input", "8x128x96"]) == 0
    out = capsys.readouterr().out
    assert "8x128x96" in out and "GFLOPs" in out and "multiply-accumulates" in out
    assert main(["models", "flops", "x3d_m", "--input", "16x224"]) == 2
    assert "frames x height x width" in capsys.readouterr().err
    assert main(["models", "flops", "x3d_mm"]) == 2
    assert "did you mean 'x3d_m'" in capsys.readouterr().err


def test_checkpoint_blocks_selects_the_first_blocks_per_stage():
    model = create_model("x3d_m", num_classes=4, act_checkpoint=True, checkpoint_blocks=[1, 0, 2])
    assert model.s2.checkpoint == [[True, False, False]]
    assert model.s3.checkpoint == [[False] * 5]
    assert model.s4.checkpoint == [[True, True] + [False] * 9]
    assert model.s5.checkpoint == [[False] * 7]  # stages beyond the list: none
    assert create_model("x3d_m", num_classes=4, act_checkpoint=True).s5.checkpoint == [[True] * 7]
