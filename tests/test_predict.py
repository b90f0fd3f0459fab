"""`pmv predict` and the Predictor on a really trained checkpoint and real mp4 files (made at test time)."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from inference_helpers import trained_run
from media import make_video, truncate
from pmv.cli.main import main
from pmv.engine.predictor import InputSpec, Predictor, PredictError, combine_scores, expand_inputs


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return trained_run(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def predictor(run):
    return Predictor.from_checkpoint(run.checkpoint, device="cpu")


def test_predictor_reproduces_the_scores_of_pmv_test(run, predictor):
    # The same protocol as `pmv test` (2 temporal x 3 spatial views along the long side, summed softmax): the
    # per-video scores of the test report, divided by the number of views, are the predictor's probabilities.
    assert predictor.spec.views == "2x3" and predictor.class_names == run.class_names
    with np.load(run.report_dir / "predictions_2x3.npz") as npz:
        scores, paths = npz["scores"], npz["paths"]
    results = list(predictor.predict_many(list(paths), top_k=4, workers=2, progress=False))
    assert [r.path for r in results] == list(paths)  # input order kept with worker processes
    for result, expected in zip(results, scores):
        probs = np.zeros(4)
        for hit in result.top_k:
            probs[hit["label"]] = hit["prob"]
        np.testing.assert_allclose(probs, expected / 6, atol=1e-5)
        assert result.views == "2x3" and result.video["orientation"] == "portrait"


def test_views_crops_and_per_view(run, predictor):
    video = sorted(run.data_root.glob("test_*.mp4"))[0]
    result = predictor.predict(video, top_k=2, views="3x3", per_view=True, crops=True)
    assert result.ok and result.views == "3x3" and len(result.top_k) == 2
    assert [(v["temporal"], v["spatial"]) for v in result.per_view] == [(k, s) for k in range(3) for s in range(3)]
    # 96x54 video -> 64x36 at the test short side 36 -> 48x36 crops at the top, centre and bottom
    assert [c["name"] for c in result.crops] == ["top", "centre", "bottom"]
    assert [c["top"] for c in result.crops] == [0.0, 0.125, 0.25]
    assert all(c["height"] == 0.75 and c["width"] == 1.0 for c in result.crops)
    assert result.top_k[0]["prob"] >= result.top_k[1]["prob"]
    with pytest.raises(Exception, match="TxS"):
        predictor.predict(video, views="three")


def test_aggregations_read_as_probabilities():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    for aggregation in ("softmax_sum", "softmax_max", "logits_sum"):
        probs = combine_scores(logits, aggregation)
        assert probs.sum().item() == pytest.approx(1.0) and probs.argmax().item() == 0


def test_cli_jsonl_with_broken_and_missing_files(run, tmp_path, capsys):
    videos = sorted(run.data_root.glob("test_*.mp4"))
    broken = truncate(videos[0], tmp_path / "cut.mp4", keep_fraction=0.5)
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    folder = tmp_path / "folder"
    folder.mkdir()
    make_video(folder / "rotated.mp4", num_frames=20, height=96, width=54, rotation=90, fps=15)  # coded sideways
    listing = tmp_path / "list.txt"
    listing.write_text(f"# one per line\n{videos[1].name},1\n", encoding="utf-8")
    (tmp_path / videos[1].name).write_bytes(videos[1].read_bytes())
    code = main(["predict", "--checkpoint", str(run.checkpoint), str(videos[0]), str(broken), str(text),
                 str(tmp_path / "missing.mp4"), str(folder), str(listing), "--top-k", "3", "--workers", "2",
                 "--device", "cpu"])
    captured = capsys.readouterr()
    assert code == 1  # some files failed
    assert "Traceback" not in captured.err and "3 of 6 video(s) could not be read" in captured.err
    rows = [json.loads(line) for line in captured.out.splitlines()]
    assert [Path(r["path"]).name for r in rows] == [videos[0].name, "cut.mp4", "notes.mp4", "missing.mp4",
                                                   "rotated.mp4", videos[1].name]
    assert [r["ok"] for r in rows] == [True, False, False, False, True, True]
    assert rows[2]["error_kind"] == "NotAVideoError" and "notes.mp4" in rows[2]["error"]
    assert rows[3]["error_kind"] == "VideoNotFoundError"
    assert rows[1]["error"]
    assert len(rows[0]["top_k"]) == 3 and rows[0]["top_k"][0]["name"] in run.class_names
    assert rows[4]["video"]["height"] == 96 and rows[4]["video"]["width"] == 54  # upright
    assert Path(rows[5]["path"]).parent == tmp_path  # list entries are relative to the list file


def test_cli_csv_and_views(run, tmp_path, capsys):
    out = tmp_path / "predictions.csv"
    # PMV-400-style list: "path,label" rows relative to the data root
    code = main(["predict", "--checkpoint", str(run.checkpoint), str(run.list_dir / "test.csv"), "--root",
                 str(run.data_root), "--out", str(out),
                 "--views", "1x1", "--top-k", "2", "--workers", "0", "--device", "cpu",
                 "--set", "test.aggregation=logits_sum"])
    assert code == 0
    with open(out, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [Path(r["path"]).parent for r in rows] == [run.data_root] * len(list(run.data_root.glob("test_*.mp4")))
    assert list(rows[0]) == ["path", "ok", "error", "top1", "prob1", "top2", "prob2"]
    assert all(r["ok"] == "1" and r["top1"] in run.class_names for r in rows)
    assert not list(tmp_path.glob(".predictions.csv*"))  # the atomic writer left no temporary file


def test_foreign_checkpoint_with_config_and_class_names(run, tmp_path, capsys):
    # A PySlowFast-style file (weights under model_state, no config) needs --config and --class-names.
    state = torch.load(run.checkpoint, map_location="cpu", weights_only=False)
    foreign = tmp_path / "x.pyth"
    torch.save({"model_state": state["model"], "epoch": 3}, foreign)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("data: {num_frames: 4, sampling_rate: 2}\nmodel: {name: tiny, num_classes: 4}\n"
                      "test: {short_side: 36, crop: [48, 36], num_temporal_views: 2, num_spatial_views: 3}\n")
    names = tmp_path / "names.txt"
    names.write_text("\n".join(["up", "down", "top", "bottom"]) + "\n")
    video = sorted(run.data_root.glob("test_*.mp4"))[0]
    assert main(["predict", "--checkpoint", str(foreign), str(video), "--device", "cpu"]) == 2
    assert "--config" in capsys.readouterr().err
    assert main(["predict", "--checkpoint", str(foreign), "--config", str(recipe), "--class-names", str(names),
                 str(video), "--device", "cpu", "--workers", "0"]) == 0
    foreign_row = json.loads(capsys.readouterr().out)
    native = Predictor.from_checkpoint(run.checkpoint, device="cpu").predict(video)
    assert [h["label"] for h in foreign_row["top_k"]] == [h["label"] for h in native.top_k]
    assert foreign_row["top_k"][0]["name"] == ["up", "down", "top", "bottom"][native.top_k[0]["label"]]
    names.write_text("one\ntwo\n")
    assert main(["predict", "--checkpoint", str(foreign), "--config", str(recipe), "--class-names", str(names),
                 str(video)]) == 2
    assert "2 class names for a model with 4 classes" in capsys.readouterr().err


def test_input_errors(tmp_path, run, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(PredictError, match="no videos"):
        expand_inputs([empty])
    assert main(["predict", "--checkpoint", str(tmp_path / "nope.pt"), str(empty)]) == 2
    assert "no videos to predict" in capsys.readouterr().err
    assert main(["predict", "--checkpoint", str(tmp_path / "nope.pt"), str(run.data_root)]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    spec = InputSpec(num_frames=4, sampling_rate=2, crop=(48, 36), short_side=36, mean=(0.5,) * 3, std=(0.2,) * 3)
    assert InputSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(Exception, match="1 or 3 spatial"):
        spec.with_views("2x2")
