"""`pmv demo` plumbing on a very small run (the full demo's accuracy is checked by running `make demo`)."""

import json

from pmv.engine.demo import DemoOptions, find_recipe, run_demo


def test_small_demo_writes_report_and_figures(tmp_path):
    out = tmp_path / "demo"
    result = run_demo(DemoOptions(out_dir=str(out), train_per_class=4, val_per_class=1, test_per_class=2, epochs=1,
                                  workers=1))
    assert result.report_md == out / "report.md" and result.num_test_videos == 8
    text = result.report_md.read_text()
    assert "test top-1" in text and "training_curve.png" in text and "moving up" in text
    assert (out / "training_curve.png").stat().st_size > 5000
    assert (out / "confusion_matrix.png").stat().st_size > 5000
    report = json.loads((out / "test" / "report.json").read_text())
    assert report["protocols"]["3x1"]["top1"] == result.top1
    assert report["invalid_videos"] == []
    assert find_recipe(None).name == "tiny.yaml"
