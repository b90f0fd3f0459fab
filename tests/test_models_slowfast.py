"""SlowFast R50 and AVSlowFast R50: reference key layout, parameter counts, input conventions, rectangular
inputs, AVS loss."""

from __future__ import annotations


import pytest
import torch
from shared_data import read_listing

from pmv.errors import ConfigError
from pmv.models import create_model
from pmv.models.flops import model_flops

SIZES = [(224, 224), (256, 192), (288, 192), (192, 256)]

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


@pytest.fixture(scope="module")
def slowfast():
    torch.manual_seed(0)
    return create_model("slowfast_r50", num_classes=4)


@pytest.fixture(scope="module")
def avslowfast():
    torch.manual_seed(0)
    return create_model("avslowfast_r50", num_classes=4)


def test_slowfast_parameter_count_and_layout():
    model = create_model("slowfast_r50", num_classes=400)
    # 34.57 M, as published for SlowFast R50 8x8 (PySlowFast / PyTorchVideo zoos).
    assert sum(p.numel() for p in model.parameters()) == 34_566_488
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    # PySlowFast's names and widths: lateral convs after s1..s4 (kernel 7, stride alpha=4), Slow widened by them.
    assert shapes["s1_fuse.conv_f2s.weight"] == (16, 8, 7, 1, 1)
    assert shapes["s2.pathway0_res0.branch1.weight"] == (256, 80, 1, 1, 1)
    assert shapes["s4_fuse.conv_f2s.weight"] == (256, 128, 7, 1, 1)
    assert shapes["s5.pathway0_res0.branch2.a.weight"] == (512, 1280, 3, 1, 1)
    assert shapes["s1.pathway1_stem.conv.weight"] == (8, 3, 5, 7, 7)
    assert shapes["head.projection.weight"] == (400, 2304)


def test_avslowfast_state_dict_equals_reference_listing():
    reference = read_listing("statedict_avslowfast_r50_4x16.txt")
    model = create_model("avslowfast_r50", num_classes=400)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert sorted(set(reference) - set(ours)) == []
    assert sorted(set(ours) - set(reference)) == []
    assert {k: v for k, v in ours.items() if reference[k] != v} == {}
    assert sum(p.numel() for p in model.parameters()) == 44_203_320


@pytest.mark.parametrize("height,width", SIZES)
def test_slowfast_forward_backward_portrait_and_landscape(slowfast, height, width):
    model = slowfast.train()
    model.zero_grad()
    logits = model(torch.randn(1, 3, 4, height, width))  # Fast 4 frames, Slow 1 (alpha 4)
    assert logits.shape == (1, 4)
    logits.sum().backward()
    assert model.s1.pathway1_stem.conv.weight.grad.abs().sum() > 0  # gradient reaches the Fast stem
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_slowfast_single_clip_equals_slow_fast_list(slowfast):
    model = slowfast.eval()
    clip = torch.randn(2, 3, 8, 64, 48)
    slow = clip[:, :, torch.linspace(0, 7, 2).long()]
    with torch.no_grad():
        assert torch.equal(model(clip), model([slow, clip]))


def test_slowfast_frame_count_must_fit_alpha(slowfast):
    with pytest.raises(ConfigError, match="multiple of alpha=4"):
        slowfast.eval()(torch.randn(1, 3, 6, 64, 48))


@pytest.mark.parametrize("height,width", SIZES)
def test_avslowfast_forward_backward_portrait_and_landscape(avslowfast, height, width):
    model = avslowfast.train()
    model.zero_grad()
    clip = torch.randn(1, 3, 8, height, width)  # Fast 8 frames, Slow 1 (alpha 8)
    audio = torch.randn(1, 1, 128, 16)  # N x 1 x T_audio x F log-mel (128 rows as the recipe, few mel bins)
    logits = model(clip, audio)
    assert logits.shape == (1, 4)
    assert model.aux_losses == {}  # no misaligned negative given: no AVS loss
    logits.sum().backward()
    assert model.s1.pathway2_stem.conv_t.weight.grad.abs().sum() > 0  # gradient reaches the audio stem


def test_avslowfast_avs_loss_with_misaligned_negative(avslowfast):
    model = avslowfast.train()
    model.zero_grad()
    torch.manual_seed(5)
    clip = torch.randn(2, 3, 8, 64, 48)
    audio = torch.randn(2, 2, 32, 16)  # channel 1: the time-shifted negative
    logits = model(clip, audio)
    assert logits.shape == (2, 4)
    assert set(model.aux_losses) == {"s3_avs", "s4_avs", "s5_avs"}
    losses = torch.stack(list(model.aux_losses.values()))
    assert torch.isfinite(losses).all() and losses.max() > 0
    (logits.sum() + losses.sum()).backward()
    assert model.s3_fuse.avs.ref_fc.weight.grad is not None
    # In eval the negative does not change the logits and no AVS loss is computed.
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model(clip, audio), model(clip, audio[:, :1]))
        assert torch.allclose(model((clip, audio[:, :1])), model(clip, audio[:, :1]))
    assert model.aux_losses == {}


def test_avslowfast_rejects_missing_audio(avslowfast):
    with pytest.raises(ConfigError, match="log-mel"):
        avslowfast.eval()(torch.randn(1, 3, 8, 64, 48))


def test_slowfast_flops_match_published_figure():
    # PySlowFast zoo: SlowFast R50 8x8, 65.7 GFLOPs per view at the 256x256 test crop.
    assert model_flops("slowfast_r50", (32, 256, 256)).gflops == pytest.approx(65.7, abs=0.1)
