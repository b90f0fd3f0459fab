"""End to end on real mp4 files: synthesise a small portrait dataset, `pmv train`, then `pmv test` with a corrupt
test video (reported and counted as an error) and the temporal-view sweep."""

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from pmv.cli.main import main
from pmv.acquire.synth import SynthOptions, synthesize
from pmv.engine import checkpointing as ckpt
from pmv.engine.tracking import read_metrics


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    summary = synthesize(out, SynthOptions(kinds=("motion", "position"), classes_per_kind=1, train_per_class=6,
                                           val_per_class=2, test_per_class=3, size=(64, 36), duration=1.0,
                                           workers=1), progress=False)
    return summary


def overrides(summary, run_dir):
    return [*summary.config_overrides(), f"train.output_dir={run_dir}", "train.epochs=2", "train.batch_size=4",
            "train.num_workers=0", "data.num_frames=4", "data.sampling_rate=2", "transform.jitter_scales=[36,40]",
            "transform.train_crop=[64,36]", "test.short_side=36", "test.crop=[64,36]", "test.batch_size=6",
            "test.num_temporal_views=2", "train.log_period=1", "train.precise_bn=true",
            "train.precise_bn_batches=2"]


def test_train_then_test_with_a_corrupt_video_and_a_view_sweep(dataset, tmp_path, capsys):
    run = tmp_path / "run"
    code = main(["train", "--config", "configs/demo/tiny.yaml", *overrides(dataset, run)])
    assert code == 0
    out = capsys.readouterr().out
    assert "trained 2 epochs (6 steps)" in out
    assert [r["kind"] for r in read_metrics(run)].count("val") == 1  # eval_period 2 in the demo recipe
    best = run / "checkpoints" / ckpt.BEST_NAME
    assert best.exists()

    # Break one test video (a truncated download): it must be listed and counted as wrong, not skipped.
    videos = sorted(Path(dataset.root).glob("test_*.mp4"))
    broken = videos[1]
    original = broken.read_bytes()
    broken.write_bytes(original[:300])
    try:
        # Two loader workers: the reason found in a worker process must still reach report.json.
        code = main(["test", "--checkpoint", str(best), "--out", str(tmp_path / "t"), "--views", "2x3",
                     "train.num_workers=2"])
        assert code == 0
        printed = capsys.readouterr().out
        report = json.loads((tmp_path / "t" / "report.json").read_text())
        assert [v["path"].endswith(broken.name) for v in report["invalid_videos"]] == [True]
        reason = report["invalid_videos"][0]["error"]
        assert broken.name in reason and "could not be decoded" not in reason, reason
        main_protocol = report["protocols"]["2x3"]
        assert main_protocol["num_videos"] == 6 and main_protocol["num_valid"] == 5
        assert main_protocol["top1"] <= 100 * 5 / 6 + 1e-9
        assert main_protocol["top1"] == pytest.approx(main_protocol["top1_valid"] * 5 / 6)
        assert "could not be decoded" in printed and broken.name in printed
        with open(tmp_path / "t" / "4x64x36x2x3_1.pkl", "rb") as handle:
            seed = pickle.load(handle)
        assert seed["video_preds"].shape == (6, 2) and seed["video_labels"].tolist() == [0, 0, 0, 1, 1, 1]
        invalid_row = [i for i, v in enumerate(videos) if v == broken][0]
        assert not seed["video_preds"][invalid_row].any()
        # Softmax sums over 2 x 3 views: every decodable row sums to 6.
        valid_rows = np.delete(seed["video_preds"], invalid_row, axis=0)
        np.testing.assert_allclose(valid_rows.sum(axis=1), 6.0, rtol=1e-5)

        code = main(["test", "--checkpoint", str(best), "--out", str(tmp_path / "s"), "--sweep", "1,3"])
        assert code == 0
        sweep = json.loads((tmp_path / "s" / "report.json").read_text())
        assert list(sweep["protocols"]) == ["1x1", "3x1"]
        assert all(p["num_valid"] == 5 for p in sweep["protocols"].values())
        assert (tmp_path / "s" / "4x64x36x3x1_1.pkl").exists() and (tmp_path / "s" / "confusion_3x1.png").exists()

        # A sweep into the folder of the 2x3 test adds its protocols to report.json instead of replacing them.
        assert main(["test", "--checkpoint", str(best), "--out", str(tmp_path / "t"), "--sweep", "1", "--views",
                     "1x3"]) == 0
        both = json.loads((tmp_path / "t" / "report.json").read_text())
        assert sorted(both["protocols"]) == ["1x3", "2x3"]
        # --views T that the sweep does not include is a mistake, not silently dropped.
        assert main(["test", "--checkpoint", str(best), "--sweep", "1,3", "--views", "2x3"]) == 2
        assert "does not include 2" in capsys.readouterr().err
    finally:
        broken.write_bytes(original)


def test_test_command_errors_are_clear(tmp_path, capsys):
    assert main(["test", "--checkpoint", str(tmp_path / "nope.pt")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    (tmp_path / "half.pt").write_bytes(b"PK\x03\x04 truncated")
    assert main(["test", "--checkpoint", str(tmp_path / "half.pt")]) == 2
    assert "cannot read checkpoint" in capsys.readouterr().err
