"""The studies' CPU models: tiny_frame (no temporal modelling) and tiny_av (audio-visual, AVSlowFast in miniature)."""

from __future__ import annotations

import pytest
import torch

from pmv.errors import ConfigError
from pmv.models import create_model
from pmv.models.tiny import sync_loss, valid_sync_pairs

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_tiny_frame_ignores_frame_order_and_tiny_does_not():
    torch.manual_seed(0)
    clip = torch.randn(2, 3, 8, 32, 24)
    perm = torch.tensor([3, 7, 0, 5, 1, 6, 2, 4])
    frame = create_model("tiny_frame", num_classes=5).eval()
    assert torch.allclose(frame(clip), frame(clip[:, :, perm]), atol=1e-5)
    assert torch.allclose(frame(clip), frame(clip.flip(2)), atol=1e-5)
    clip_model = create_model("tiny", num_classes=5).eval()
    torch.nn.init.normal_(clip_model.head.projection.weight, std=1.0)  # make the head's output sensitive
    assert not torch.allclose(clip_model(clip), clip_model(clip.flip(2)), atol=1e-4)
    assert all(unit.temporal.conv.kernel_size[0] == 1 for unit in frame.blocks)


def test_tiny_av_input_spec_and_shapes():
    model = create_model("tiny_av", num_classes=4, input_size=(8, 32, 24), audio_frames=32, audio_mel_bins=20)
    spec = model.input_spec
    assert spec.kind == "audio_visual" and (spec.audio_frames, spec.audio_mel_bins) == (32, 20)
    clip, audio = spec.example_inputs(batch=3)
    assert audio.shape == (3, 1, 32, 20)
    model.eval()
    assert model(clip, audio).shape == (3, 4)
    assert model([clip, audio]).shape == (3, 4)  # a list, as some loaders pass it
    assert model.aux_losses == {}
    with pytest.raises(ConfigError, match="enable data.audio"):
        model(clip)
    with pytest.raises(ConfigError, match="N x 1 x T_audio x F"):
        model(clip, audio[:, 0])


def test_tiny_av_sync_loss_only_in_training_with_a_negative():
    torch.manual_seed(0)
    model = create_model("tiny_av", num_classes=4, audio_frames=32, audio_mel_bins=20, drop_pathway=0.0).train()
    clip = torch.randn(4, 3, 4, 32, 24)
    positive = torch.randn(4, 1, 32, 20)
    negative = torch.randn(4, 1, 32, 20)
    logits = model(clip, torch.cat([positive, negative], dim=1))
    assert set(model.aux_losses) == {"av_sync"}
    loss = logits.logsumexp(1).mean() + sum(model.aux_losses.values())
    loss.backward()
    assert model.sync_visual.weight.grad is not None and model.sync_audio.weight.grad.abs().sum() > 0
    # logits use the positive audio only: the same with or without the negative channel
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model(clip, torch.cat([positive, negative], 1)), model(clip, positive), atol=1e-5)
    assert model.aux_losses == {}
    model.train()
    model(clip, positive)
    assert model.aux_losses == {}  # no negative, no sync loss


def test_sync_loss_pulls_positives_and_pushes_misaligned_negatives():
    ref = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    mask = torch.tensor([True, True])
    aligned = sync_loss(ref, ref.clone(), -ref, mask, margin=0.99)
    assert aligned == pytest.approx(0.0, abs=1e-6)  # positive equal, negative opposite (distance 1 >= margin)
    confused = sync_loss(ref, -ref, ref.clone(), mask, margin=0.99)
    assert confused > 0.9  # positive far, negative on top of the reference
    assert sync_loss(ref, -ref, ref, torch.tensor([False, False]), 0.99) == 0.0
    # pairs whose negative duplicates the positive, or that are silent, are left out
    loud = torch.randn(3, 1, 16, 8)
    audio = torch.cat([loud, torch.randn(3, 1, 16, 8)], dim=1)
    audio[1, 1] = audio[1, 0]
    audio[2] = 0.0
    assert valid_sync_pairs(audio, 0.01, 0.99999).tolist() == [True, False, False]


def test_tiny_av_drop_pathway_and_fusion():
    torch.manual_seed(0)
    model = create_model("tiny_av", num_classes=3, audio_frames=32, audio_mel_bins=20, drop_pathway=1.0)
    torch.nn.init.ones_(model.a2v[1].weight)  # fusion on (it starts at zero scale)
    clip, audio = torch.randn(2, 3, 4, 32, 24), torch.randn(2, 1, 32, 20)
    model.eval()
    with torch.no_grad():
        fused = model(clip, audio)
        model.fusion = False
        unfused = model(clip, audio)
        model.fusion = True
    assert not torch.allclose(fused, unfused)  # A->V changes the visual features at test time
    model.train()
    torch.manual_seed(1)
    dropped = model(clip, audio)
    logits = dropped.sum()
    logits.backward()
    assert model.a2v[0].weight.grad is not None  # the dropped pathway still joins the graph (DDP)
    assert model.a2v[0].weight.grad.abs().sum() == 0


def test_tiny_av_audio_only_ignores_the_clip():
    model = create_model("tiny_av", num_classes=3, modality="audio", audio_frames=32, audio_mel_bins=20).eval()
    audio = torch.randn(2, 1, 32, 20)
    assert torch.equal(model(torch.randn(2, 3, 4, 16, 16), audio), model(torch.zeros(2, 3, 4, 16, 16), audio))
    assert not hasattr(model, "visual")
    with pytest.raises(ConfigError, match="modality"):
        create_model("tiny_av", modality="video")


def test_flops_count_the_audio_pathway():
    from pmv.models.flops import model_flops

    visual = model_flops("tiny", (8, 32, 32), 6).gflops
    audio_visual = model_flops("tiny_av", (8, 32, 32), 6).gflops
    assert audio_visual > visual > 0
