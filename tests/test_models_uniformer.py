"""UniFormer-S (video) and the frame-level UniFormer-S: reference keys, any crop shape, .pth loading, per-frame math."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from shared_data import read_listing

from pmv.errors import ConfigError
from pmv.models import create_model
from pmv.models.uniformer import UniFormer, uniformer_s, uniformer_s_frame

SMALL = (1, 1, 1, 1)


def load_into(model: torch.nn.Module, path: Path) -> None:
    try:
        from pmv.models.checkpoint import load_checkpoint
    except ImportError:
        model.load_state_dict(torch.load(path)["model"], strict=True)
    else:
        load_checkpoint(path, model, strict=True)


def build_shapes_only(name: str = "uniformer_s", **kwargs) -> UniFormer:
    """A full-size model on the meta device: real module tree and shapes, no memory, no init cost."""
    with torch.device("meta"):
        return create_model(name, **kwargs)


def test_parameter_count_and_layout():
    model = build_shapes_only(num_classes=400, input_size=(16, 224, 224))
    assert sum(p.numel() for p in model.parameters()) == 21_400_400
    assert len(model.state_dict()) == 331
    assert model.state_dict()["patch_embed1.proj.weight"].shape == (64, 3, 3, 4, 4)
    assert model.blocks3[0].attn.num_heads == 5 and model.blocks4[0].attn.num_heads == 8
    rates = [b.drop_path.drop_prob for stage in range(1, 5) for b in getattr(model, f"blocks{stage}")]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.1) and len(rates) == 18
    assert model.head_dropout.p == 0.0  # the reference UniFormer has no head dropout
    frame = build_shapes_only("uniformer_s_frame", num_classes=400)
    assert sum(p.numel() for p in frame.parameters()) == 21_237_456  # the image UniFormer-S, 400-way head


def test_initialisation_follows_reference():
    torch.manual_seed(0)
    model = uniformer_s(num_classes=400, stage_depths=SMALL)
    assert torch.all(model.blocks3[0].attn.qkv.bias == 0) and torch.all(model.blocks3[0].norm1.weight == 1)
    assert 0.015 < model.head.weight.std().item() < 0.025
    assert torch.all(model.norm.weight == 1) and torch.all(model.norm.running_var == 1)


def test_state_dict_equals_reference_listing():
    reference = read_listing("statedict_uniformer_s_16x4.txt")
    model = build_shapes_only(num_classes=400, input_size=(16, 224, 224))
    shapes = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    assert list(shapes.items()) == list(reference.items())


@pytest.mark.parametrize("height, width", [(224, 224), (256, 192), (288, 192), (192, 256)])
def test_forward_backward_square_and_portrait(height, width):
    torch.manual_seed(1)
    model = uniformer_s(num_classes=6, input_size=(2, height, width), stage_depths=SMALL, drop_path=0.1)
    logits = model(torch.randn(1, 3, 2, height, width))
    assert logits.shape == (1, 6)
    logits.square().sum().backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name


def test_full_depth_sdpa_matches_math():
    torch.manual_seed(2)
    model = uniformer_s(num_classes=9, input_size=(4, 64, 32)).eval()
    clip = torch.randn(2, 3, 4, 64, 32)
    with torch.no_grad():
        fast = model(clip)
        model.set_attention_impl("math")
        reference = model(clip)
    assert fast.shape == (2, 9)
    torch.testing.assert_close(fast, reference, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(fast[0], fast[1])


def test_reference_format_pth_loads_strictly_with_identical_outputs(tmp_path):
    torch.manual_seed(3)
    trained = uniformer_s(num_classes=5, input_size=(4, 64, 32), stage_depths=SMALL)
    trained.train()(torch.randn(2, 3, 4, 64, 32))  # move the BN running stats off their defaults
    trained.eval()
    path = tmp_path / "uniformer_small_pm.pth"
    torch.save({"model": trained.state_dict()}, path)
    fresh = uniformer_s(num_classes=5, input_size=(4, 64, 32), stage_depths=SMALL).eval()
    clip = torch.randn(1, 3, 4, 64, 32)
    with torch.no_grad():
        assert not torch.allclose(fresh(clip), trained(clip))
        load_into(fresh, path)
        torch.testing.assert_close(fresh(clip), trained(clip), rtol=0, atol=0)


def test_frame_level_model_is_2d_and_averages_independent_frames():
    torch.manual_seed(4)
    model = uniformer_s_frame(num_classes=4, input_size=(3, 64, 32), stage_depths=SMALL).eval()
    assert model.state_dict()["patch_embed1.proj.weight"].shape == (64, 3, 4, 4)
    assert model.state_dict()["blocks1.0.attn.weight"].shape == (64, 1, 5, 5)
    clip = torch.randn(2, 3, 3, 64, 32)
    with torch.no_grad():
        logits = model(clip)
        per_frame = torch.stack([model(clip[:, :, t : t + 1]) for t in range(3)]).mean(0)
        reversed_clip = model(clip.flip(2))
    assert logits.shape == (2, 4)
    torch.testing.assert_close(logits, per_frame, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(logits, reversed_clip, rtol=1e-4, atol=1e-5)  # no temporal order at all
    # The video model, by contrast, sees time.
    video = uniformer_s(num_classes=4, input_size=(4, 64, 32), stage_depths=SMALL).eval()
    ramp = torch.arange(4.0).view(1, 1, 4, 1, 1).expand(1, 3, 4, 64, 32)
    with torch.no_grad():
        assert not torch.allclose(video(ramp), video(ramp.flip(2)))


def test_full_depth_frame_level_forward_backward():
    torch.manual_seed(5)
    model = create_model("uniformer_s_frame", num_classes=3, input_size=(2, 32, 32))
    model(torch.randn(1, 3, 2, 32, 32)).sum().backward()
    assert model.patch_embed1.proj.weight.grad.abs().sum() > 0


def test_frame_weights_inflate_into_video_model():
    torch.manual_seed(6)
    frame = uniformer_s_frame(num_classes=3, stage_depths=SMALL)
    video = uniformer_s(num_classes=3, stage_depths=SMALL)
    adapted = video.adapt_state_dict(frame.state_dict())
    video.load_state_dict(adapted, strict=True)
    kernel_2d = frame.state_dict()["blocks1.0.attn.weight"]
    kernel_3d = video.state_dict()["blocks1.0.attn.weight"]
    assert kernel_3d.shape == (64, 1, 5, 5, 5)
    torch.testing.assert_close(kernel_3d.sum(2), kernel_2d)
    torch.testing.assert_close(video.state_dict()["head.weight"], frame.state_dict()["head.weight"])


def test_activation_checkpointing_by_stage_counts():
    clip = torch.randn(1, 3, 2, 64, 64)
    grads = []
    for act_checkpoint in (False, True):
        torch.manual_seed(7)
        model = uniformer_s(num_classes=3, input_size=(2, 64, 64), stage_depths=(1, 1, 2, 1), drop_path=0.0,
                            act_checkpoint=act_checkpoint, checkpoint_blocks=[0, 0, 1, 0])
        model(clip).sum().backward()
        grads.append(model.patch_embed1.proj.weight.grad)
    assert model.checkpoint_flags == [[False], [False], [True, False], [False]]
    torch.testing.assert_close(grads[0], grads[1])
    everything = uniformer_s(input_size=(2, 64, 64), stage_depths=SMALL, act_checkpoint=True)
    assert everything.checkpoint_flags == [[True]] * 4


def test_bad_options_raise_config_errors():
    with pytest.raises(ConfigError, match="attention_impl"):
        uniformer_s(stage_depths=SMALL, attention_impl="xformers")
    with pytest.raises(ConfigError, match="one count per stage"):
        uniformer_s(stage_depths=SMALL, act_checkpoint=True, checkpoint_blocks=[0, 1])


def test_finetuning_checkpoint_with_other_class_count_reinitialises_only_the_head(tmp_path):
    from pmv.models.checkpoint import load_checkpoint

    torch.manual_seed(8)
    pretrained = uniformer_s(num_classes=400, stage_depths=SMALL)
    path = tmp_path / "uniformer_k400.pth"
    torch.save({"model": pretrained.state_dict()}, path)
    model = uniformer_s(num_classes=10, stage_depths=SMALL)
    report = load_checkpoint(path, model, strict=True)
    assert report.reinitialized == ["head.bias", "head.weight"]
    torch.testing.assert_close(model.blocks3[0].attn.qkv.weight, pretrained.blocks3[0].attn.qkv.weight)
    assert 0.01 < model.head.weight.std().item() < 0.03 and torch.all(model.head.bias == 0)


@pytest.mark.parametrize("name", ["uniformer_s", "uniformer_s_frame"])
def test_meta_device_forward_for_flop_counting(name):
    model = build_shapes_only(name, num_classes=400).eval()
    model.set_attention_impl("math")
    with torch.device("meta"):
        assert model(torch.randn(1, 3, 16, 256, 192)).shape == (1, 400)
