"""Audio-visual models through `pmv train` / `pmv test`: batches carry the log-mel audio (and, in training, a
misaligned negative), the model's AV-sync losses join the loss, and resume replays exactly."""

import json

import pytest
import torch
import torch.nn as nn

from pmv.acquire.synth import SynthOptions, synthesize
from pmv.config import DataConfig, TransformConfig
from pmv.data.audio import misaligned_start, mix_easy_negatives
from pmv.data.dataset import build_train_dataset
from pmv.data.loader import collate_clips
from pmv.engine import checkpointing as ckpt
from pmv.engine.loop import model_inputs
from pmv.models.layers import InputSpec
from pmv.models.registry import register_model

SEEN: dict = {"audio_shapes": [], "aux": 0}


class TinyAudioVisual(nn.Module):
    """Pooled clip + pooled spectrogram -> logits; with a negative in audio channel 1 it adds a sync loss."""

    def __init__(self, num_classes: int, input_size):
        super().__init__()
        self.input_spec = InputSpec(kind="audio_visual", num_frames=input_size[0], crop=tuple(input_size[1:]),
                                    audio_frames=16, audio_mel_bins=8)
        self.visual = nn.Linear(3, 8)
        self.audio = nn.Linear(8, 8)
        self.head = nn.Linear(16, num_classes)
        self.aux_losses: dict = {}

    def forward(self, clip, audio):
        SEEN["audio_shapes"].append(tuple(audio.shape))
        v = self.visual(clip.mean(dim=(2, 3, 4)))
        a = self.audio(audio[:, 0].mean(dim=1))
        self.aux_losses = {}
        if self.training and audio.shape[1] == 2:
            negative = self.audio(audio[:, 1].mean(dim=1))
            self.aux_losses["sync"] = 0.1 * torch.relu(1.0 - (a - negative).pow(2).mean())
            SEEN["aux"] += 1
        return self.head(torch.cat([v, a], dim=1))


@register_model
def engine_test_av(num_classes=2, input_size=(4, 32, 18), **_):
    return TinyAudioVisual(num_classes, input_size)


@pytest.fixture(scope="module")
def sound_data(tmp_path_factory):
    return synthesize(tmp_path_factory.mktemp("av"), SynthOptions(kinds=("sound",), classes_per_kind=2,
                      train_per_class=4, val_per_class=1, test_per_class=2, size=(64, 36), duration=2.0, workers=1),
                      progress=False)


AUDIO = ["data.audio=true", "data.audio_frames=16", "data.audio_mel_bins=8", "data.num_frames=4",
         "transform.train_crop=[64,36]", "transform.jitter_scales=[36,40]", "test.crop=[64,36]", "test.short_side=36"]


def test_misaligned_window_keeps_the_gap():
    g = torch.Generator().manual_seed(0)
    starts = [misaligned_start(4.0, 1.0, 10.0, 0.5, g) for _ in range(2000)]
    assert all(s <= 3.5 or 4.5 <= s <= 9.0 for s in starts)
    assert min(starts) < 0.5 and max(starts) > 8.5  # both sides are drawn
    assert misaligned_start(0.0, 1.0, 1.2, 0.5) is None  # no room: the batch step uses another video's audio


def test_easy_negatives_come_from_the_next_video():
    audio = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 2, 3, 2).clone()
    mixed = mix_easy_negatives(audio, 0.5)
    assert mixed[:, 1, 0, 0].tolist() == [1.0, 2.0, 2.0, 3.0]  # rows 0-1 swapped in, rows 2-3 keep their own
    assert torch.equal(mixed[:, 0], audio[:, 0])


def test_train_items_carry_a_misaligned_negative(sound_data):
    data = DataConfig(list_dir=sound_data.list_dir, root=sound_data.root, num_frames=4, audio=True, audio_frames=16,
                      audio_mel_bins=8, audio_negatives=True, audio_misaligned_gap=8)
    dataset = build_train_dataset(data, TransformConfig(jitter_scales=[36, 40], train_crop=[64, 36]))
    batch = collate_clips([dataset[(0, 1)], dataset[(1, 2)]])
    assert batch["audio"].shape == (2, 2, 16, 8)
    assert not torch.allclose(batch["audio"][:, 0], batch["audio"][:, 1])  # another moment of the tone track
    assert torch.equal(dataset[(0, 1)]["audio"], dataset[(0, 1)]["audio"])  # keyed: the same draw again
    inputs, labels = model_inputs(batch, torch.device("cpu"), audio_visual=True)
    assert len(inputs) == 2 and inputs[1].shape == (2, 2, 16, 8) and labels.shape == (2,)


def test_audio_visual_train_test_and_resume(sound_data, tmp_path, capsys):
    from pmv.cli.main import main

    run = tmp_path / "run"
    common = ["train", "--config", "configs/demo/tiny.yaml", *sound_data.config_overrides(), *AUDIO,
              "model.name=engine_test_av", "train.batch_size=2", "train.num_workers=0", "train.epochs=2",
              "train.checkpoint_period=1", "train.eval_period=1", "data.audio_negatives=true",
              "data.audio_misaligned_gap=8", "data.mix_negative_epoch=1", "train.precise_bn=false", "train.keep_last=5"]
    SEEN["audio_shapes"].clear()
    SEEN["aux"] = 0
    assert main([*common, f"train.output_dir={run}"]) == 0
    assert SEEN["aux"] == 8  # every training step had negatives and a sync loss
    assert (2, 2, 16, 8) in SEEN["audio_shapes"] and (2, 1, 16, 8) in SEEN["audio_shapes"]  # train / val
    final = ckpt.read_checkpoint(ckpt.list_checkpoints(run)[-1])

    # Resume from epoch 1 into a new folder: the same weights at the end.
    again = tmp_path / "again"
    assert main([*common, f"train.output_dir={again}", "--resume", str(ckpt.list_checkpoints(run)[0])]) == 0
    resumed = ckpt.read_checkpoint(ckpt.list_checkpoints(again)[-1])
    assert all(torch.equal(final["model"][k], resumed["model"][k]) for k in final["model"])

    assert main(["test", "--checkpoint", str(ckpt.list_checkpoints(run)[-1]), "--out", str(tmp_path / "t"),
                 "--views", "2x1"]) == 0
    report = json.loads((tmp_path / "t" / "report.json").read_text())
    assert report["protocols"]["2x1"]["num_valid"] == 4
