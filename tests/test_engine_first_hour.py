"""What a new user meets first: clear messages for common mistakes, and no global state left behind."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pmv.cli.main import main
from pmv.engine import checkpointing as ckpt
from pmv.engine.trainer import deterministic_algorithms

ROOT = Path(__file__).resolve().parents[1]


def test_device_cuda_without_cuda_is_a_clear_error(capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code = main(["train", "--config", "configs/demo/tiny.yaml", "--device", "cuda"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "--device cuda" in err and "--device cpu" in err


def test_a_data_root_without_the_listed_videos_stops_before_training(tmp_path, capsys):
    lists = tmp_path / "lists"
    lists.mkdir()
    for split in ("train", "val"):
        (lists / f"{split}.csv").write_text("a.mp4,0\nb.mp4,1\n")
    (lists / "class_name_mapping.csv").write_text("up,0\ndown,1\n")
    empty = tmp_path / "videos"
    empty.mkdir()
    code = main(["train", "--config", "configs/demo/tiny.yaml", f"data.list_dir={lists}", f"data.root={empty}",
                 "model.num_classes=2", f"train.output_dir={tmp_path / 'run'}"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"none of the 2 videos listed in {lists / 'train.csv'} is under {empty}" in err
    assert "set data.root" in err and not (tmp_path / "run" / "checkpoints").exists()


def test_determinism_flags_are_restored_after_a_run():
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark)
    with deterministic_algorithms(True):
        assert torch.are_deterministic_algorithms_enabled()
    assert (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark) == before


def test_ctrl_c_names_the_checkpoint_to_resume_from(tmp_path):
    from pmv.acquire.synth import SynthOptions, synthesize

    summary = synthesize(tmp_path / "data", SynthOptions(kinds=("motion",), classes_per_kind=2, train_per_class=16,
                                                         val_per_class=1, test_per_class=1, size=(64, 36),
                                                         duration=0.6, workers=1), progress=False)
    run = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "pmv", "train", "--config", str(ROOT / "configs/demo/tiny.yaml"),
                             *summary.config_overrides(), f"train.output_dir={run}", "train.epochs=50",
                             "train.batch_size=2", "train.num_workers=1", "data.num_frames=2",
                             "transform.train_crop=[32,18]", "transform.jitter_scales=[36,40]",
                             "test.crop=[32,18]", "test.short_side=36", "train.checkpoint_period=100"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if (run / "metrics.jsonl").is_file() and '"kind": "train"' in (run / "metrics.jsonl").read_text():
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    saved = ckpt.list_checkpoints(run)
    assert saved and f"checkpoint written: {saved[-1]}" in err and "Run the same command again" in err
    assert "Traceback" not in err
    assert "\r" not in err  # stderr is a pipe, not a terminal: no progress bars redrawn into the log


HANG_SCRIPT = """
import sys, torch, torch.nn as nn
from pmv.models.registry import register_model
import pmv.engine.trainer as trainer

class Broken(torch.utils.data.Dataset):
    labels = [0, 1] * 4
    num_classes, class_names, paths = 2, ["a", "b"], [str(i) for i in range(8)]
    def __len__(self):
        return 8
    def __getitem__(self, key):
        raise TypeError("a bug in a dataset")

@register_model
def exit_test_mlp(num_classes=2, input_size=(2, 4, 4), **_):
    return nn.Sequential(nn.Flatten(), nn.Linear(96, num_classes))

trainer.build_datasets = lambda data, transform, test: (Broken(), None)
from pmv.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_an_error_inside_loader_workers_ends_the_run_instead_of_hanging(tmp_path):
    # Workers ignore SIGTERM (stop signals are the main process's); at exit the leftover workers must still go.
    script = tmp_path / "broken.py"
    script.write_text(HANG_SCRIPT)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"model: {{name: exit_test_mlp, num_classes: 2}}\n"
                      f"train: {{epochs: 1, batch_size: 2, num_workers: 2, tensorboard: false, "
                      f"output_dir: {tmp_path / 'run'}}}\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    proc = subprocess.run([sys.executable, str(script), "train", "--config", str(recipe)], capture_output=True,
                          text=True, env=env, timeout=90)
    assert proc.returncode != 0 and "a bug in a dataset" in proc.stderr
    assert "killed by signal" not in proc.stderr


def test_progress_bars_only_on_a_terminal_and_never_with_no_progress(monkeypatch):
    import argparse

    from pmv.cli.common import show_progress

    class Terminal:
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stderr", Terminal())
    assert show_progress(argparse.Namespace(no_progress=False))
    assert not show_progress(argparse.Namespace(no_progress=True))
    monkeypatch.setattr(sys, "stderr", open(os.devnull, "w"))
    assert not show_progress(argparse.Namespace(no_progress=False))
