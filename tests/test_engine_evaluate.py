"""Multi-view aggregation, metrics and prediction files on hand-made examples (a fake dataset whose 'clips' are the
logits a pass-through model returns)."""

import csv
import json
import pickle

import numpy as np
import pytest
import torch
import torch.nn as nn

from pmv.config import Config, TrainConfig
from pmv.config import schema
from pmv.engine.evaluator import apply_views_argument, run_test, run_view_sweep
from pmv.engine.metrics import compute_test_metrics, seed_predictions_name, topk_correct
from pmv.errors import ConfigError


class PassThrough(nn.Module):
    """Returns the clip's values as logits: a C x 1 x 1 x 1 clip carries its own C class scores."""

    def __init__(self):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return x.flatten(1) + 0 * self.anchor


class ViewsDataset(torch.utils.data.Dataset):
    """Per-view items like build_test_dataset's: one row per (video, temporal view, spatial view)."""

    def __init__(self, logits, labels, invalid=()):
        self.labels = list(labels)
        self.paths = [f"v{i}.mp4" for i in range(len(labels))]
        self.class_names = ["a", "b", "c"]
        self.num_classes = 3
        self.items = []
        for video, views in enumerate(logits):
            for t, view in enumerate(views):
                self.items.append((video, t, torch.tensor(view, dtype=torch.float32), video not in invalid))

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        video, t, logits, valid = self.items[i]
        clip = logits.reshape(3, 1, 1, 1) if valid else torch.zeros(3, 1, 1, 1)
        return {"clip": clip, "label": self.labels[video], "index": video, "temporal_view": t, "spatial_view": 1,
                "valid": valid, "error": "" if valid else "moov atom not found"}


LOGITS = [
    [[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]],   # video 0, label 0
    [[0.0, 0.0, 3.0], [0.0, 4.0, 0.0]],   # video 1, label 1: the second view outweighs the first
    [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]],   # video 2, label 2: undecodable
    [[0.0, 0.0, 1.0], [1.0, 0.0, 1.0]],   # video 3, label 2
]
LABELS = [0, 1, 2, 2]


def config(tmp_path, aggregation):
    return Config(test=schema.TestConfig(num_temporal_views=2, num_spatial_views=1, crop=[8, 4], batch_size=3,
                                  aggregation=aggregation),
                  train=TrainConfig(num_workers=0, output_dir=str(tmp_path)))


def softmax(x):
    e = np.exp(np.asarray(x) - np.max(x))
    return e / e.sum()


@pytest.mark.parametrize("aggregation", ["softmax_sum", "logits_sum"])
def test_multi_view_aggregation_and_seed_file(tmp_path, aggregation):
    cfg = config(tmp_path, aggregation)
    cfg.data.num_frames = 4
    dataset = ViewsDataset(LOGITS, LABELS, invalid={2})
    report = run_test(cfg, PassThrough(), tmp_path / "out", dataset=dataset)
    if aggregation == "softmax_sum":
        expected = np.array([softmax(a) + softmax(b) for a, b in LOGITS])
    else:
        expected = np.array([np.add(a, b) for a, b in LOGITS])
    expected[2] = 0.0  # an undecodable video scores nothing
    seed_file = tmp_path / "out" / "4x8x4x2x1_1.pkl"
    with open(seed_file, "rb") as handle:
        seed = pickle.load(handle)
    assert set(seed) == {"video_preds", "video_labels"}
    np.testing.assert_allclose(seed["video_preds"], expected, rtol=1e-6)
    assert seed["video_labels"].tolist() == LABELS and seed["video_labels"].dtype == np.int64

    metrics = report.main.metrics
    right = 3
    assert metrics.top1 == pytest.approx(100 * right / 4)  # the undecodable video counts as wrong
    assert metrics.top1_valid == pytest.approx(100 * right / 3)
    assert metrics.num_valid == 3 and metrics.num_videos == 4
    body = json.loads((tmp_path / "out" / "report.json").read_text())
    assert body["invalid_videos"] == [{"index": 2, "path": "v2.mp4", "label": 2, "error": "moov atom not found"}]
    assert body["protocols"]["2x1"]["top1"] == pytest.approx(metrics.top1)
    with open(tmp_path / "out" / "per_class_2x1.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["class_name"] for r in rows] == ["a", "b", "c"]
    assert rows[2]["videos"] == "2" and rows[2]["invalid"] == "1" and rows[2]["top1"] == "50.00"
    npz = np.load(tmp_path / "out" / "predictions_2x1.npz")
    assert npz["valid"].tolist() == [True, True, False, True] and npz["view_counts"].tolist() == [2, 2, 0, 2]
    assert (tmp_path / "out" / "confusion_2x1.png").stat().st_size > 1000


class SweepDataset(torch.utils.data.Dataset):
    """build_video_views_dataset-style items: every view of every K for one video, decoded once."""

    def __init__(self, counts, labels):
        self.labels, self.counts = list(labels), counts
        self.paths = [f"w{i}.mp4" for i in range(len(labels))]
        self.class_names, self.num_classes = ["a", "b", "c"], 3
        self.failed = {}

    def __len__(self):
        return len(self.labels)

    def view_logits(self, video, k, j):
        # Early views say class 0, later ones the label: more views help here.
        logits = torch.zeros(3)
        logits[self.labels[video] if j >= 1 else 0] = 1.0 + j
        return logits

    def __getitem__(self, video):
        clips, views = [], []
        for k in self.counts:
            for j in range(k):
                clips.append(self.view_logits(video, k, j).reshape(3, 1, 1, 1))
                views.append((k, j, 1))
        return {"clips": torch.stack(clips), "views": torch.tensor(views), "label": self.labels[video],
                "index": video, "valid": True}


def test_view_sweep_scores_every_count_from_one_pass(tmp_path):
    cfg = config(tmp_path, "logits_sum")
    dataset = SweepDataset([1, 3], labels=[1, 2, 0])
    report = run_view_sweep(cfg, PassThrough(), tmp_path / "sweep", [1, 3], dataset=dataset)
    by_name = {p.name: p.metrics for p in report.protocols}
    assert list(by_name) == ["1x1", "3x1"]
    assert by_name["1x1"].top1 == pytest.approx(100 / 3)  # one view: everything is class 0
    assert by_name["3x1"].top1 == pytest.approx(100.0)
    with open(tmp_path / "sweep" / "16x8x4x3x1_1.pkl", "rb") as handle:
        preds = pickle.load(handle)["video_preds"]
    np.testing.assert_allclose(preds[0], [1.0, 5.0, 0.0])  # views j=0,1,2 -> 1 on class 0, 2 + 3 on label 1


def test_topk_and_mean_class_accuracy():
    logits = torch.tensor([[3.0, 2, 1, 0, 0, 0], [0, 0, 0, 0, 0, 1.0]])
    assert topk_correct(logits, torch.tensor([1, 0]), (1, 5)) == [0, 2]
    m = compute_test_metrics(np.eye(3)[[0, 0, 2, 2]], np.array([0, 1, 2, 2]), np.array([True, True, True, False]))
    assert m.top1 == 50.0 and m.top1_valid == pytest.approx(200 / 3)
    assert m.mean_class_top1 == pytest.approx((100 + 0 + 50) / 3)


def test_views_argument_and_seed_name():
    cfg = apply_views_argument(Config(), "10x3")
    assert (cfg.test.num_temporal_views, cfg.test.num_spatial_views) == (10, 3)
    with pytest.raises(ConfigError, match="TxS"):
        apply_views_argument(Config(), "ten")
    assert seed_predictions_name(16, [256, 256], 10, 3, 1) == "16x256x256x10x3_1.pkl"
