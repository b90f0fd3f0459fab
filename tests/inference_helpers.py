"""A real trained checkpoint for the predict / export / serve tests, made once per test session.

``trained_run(base)`` synthesises a tiny portrait dataset (motion + position classes, 96x54 videos), trains the
``tiny`` model for one epoch with ``pmv train`` and runs ``pmv test`` (3 crops along the long side), all on the CPU
in a few seconds. Import as ``from inference_helpers import trained_run`` (pytest puts ``tests/`` on sys.path).
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

_CACHE: dict[str, "TrainedRun"] = {}


@dataclass
class TrainedRun:
    checkpoint: Path
    data_root: Path  # the synthetic videos
    list_dir: Path  # train.csv, val.csv, test.csv, class_name_mapping.csv
    report_dir: Path  # a `pmv test` output folder (report.json, per_class_*.csv, predictions_*.npz)
    class_names: list[str]


def trained_run(base: Path) -> TrainedRun:
    key = str(base)
    if key in _CACHE:
        return _CACHE[key]
    from pmv.acquire.synth import SynthOptions, synthesize
    from pmv.cli.main import main
    from pmv.data.annotations import read_class_names

    out = base / "trained_tiny"
    summary = synthesize(out / "data", SynthOptions(kinds=("motion", "position"), classes_per_kind=2,
                                                    train_per_class=3, val_per_class=1, test_per_class=2,
                                                    size=(96, 54), duration=1.0, workers=1), progress=False)
    run = out / "run"
    overrides = [*summary.config_overrides(), f"train.output_dir={run}", "train.epochs=1", "train.batch_size=4",
                 "train.num_workers=0", "data.num_frames=4", "data.sampling_rate=2",
                 "transform.jitter_scales=[36,40]", "transform.train_crop=[48,36]", "test.short_side=36",
                 "test.crop=[48,36]", "test.num_temporal_views=2", "test.num_spatial_views=3",
                 "test.batch_size=6", "train.eval_period=1"]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["train", "--config", "configs/demo/tiny.yaml", *overrides]) == 0
        checkpoints = sorted((run / "checkpoints").glob("*.pt"))
        assert checkpoints, "training wrote no checkpoint"
        checkpoint = next((p for p in checkpoints if p.name.startswith("best")), checkpoints[-1])
        assert main(["test", "--checkpoint", str(checkpoint), "--out", str(out / "test")]) == 0
    list_dir = Path(summary.list_dir)
    result = TrainedRun(checkpoint=checkpoint, data_root=Path(summary.root), list_dir=list_dir,
                        report_dir=out / "test", class_names=read_class_names(list_dir / "class_name_mapping.csv"))
    _CACHE[key] = result
    return result
