"""`pmv study all --demo` end to end through the CLI, at a reduced size (the full demo is `pmv study all --demo`)."""

import json

import numpy as np
import pytest

from pmv.cli.main import main

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]


def test_study_all_demo_writes_every_study(tmp_path, capsys):
    out = tmp_path / "demo"
    code = main(["study", "all", "train.num_workers=0", "--demo", "--out", str(out), "--epochs", "1",
                 "--train-per-class", "2", "--val-per-class", "1", "--test-per-class", "1"])
    assert code == 0
    results = {name: json.loads((out / name / "results.json").read_text())
               for name in ("format", "spatial-bias", "augmentation", "views", "temporal", "audio")}
    formats = {"portrait", "landscape"}
    assert set(results["format"]["top1"]) == formats
    assert all(set(row) == formats for row in results["format"]["top1"].values())
    assert np.array(results["spatial-bias"]["top1"]).shape == (16, 9)
    assert set(results["spatial-bias"]["probes"]) == {"Probing-P", "Probing-L"}
    assert set(results["augmentation"]["top1"]) == {"shorter", "default", "rect_48x36", "rect_54x36"}
    rows = results["views"]["rows"]
    assert {(r["temporal"], r["spatial"]) for r in rows} == {(t, s) for t in (1, 3, 5, 7, 10) for s in (1, 3)}
    assert set(results["temporal"]["top1"]) == {"ordered", "reversed", "shuffled", "single_frame", "frame_model"}
    assert set(results["audio"]["top1"]) == {"visual", "audio_visual", "audio"}
    # one shared portrait model: format's, the views/temporal checkpoint and the shorter recipe of augmentation
    shared = results["format"]["checkpoints"]["portrait"]
    assert results["views"]["checkpoint"] == shared == results["temporal"]["checkpoint"]
    assert results["augmentation"]["checkpoints"]["augmentation-shorter"] == shared
    assert results["spatial-bias"]["checkpoint"] == shared
    for name in results:
        assert (out / name / "report.md").is_file() and list((out / name).glob("*.png")), name
    readme = (out / "README.md").read_text()
    assert all(f"## {name}" in readme for name in results)
    assert "## audio" in capsys.readouterr().out
