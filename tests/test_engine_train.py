"""The training engine on a fake in-memory dataset: a run, a SIGKILLed-and-resumed run that ends with the same
weights as an uninterrupted one, and a 2-process torchrun (gloo) run that matches a 1-process run."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from pmv.engine import checkpointing as ckpt
from pmv.engine.tracking import read_metrics

ROOT = Path(__file__).resolve().parents[1]

# A script that runs the real `pmv` CLI with a fake dataset and a BatchNorm-free model (so a 2-process run can
# match a 1-process one exactly); torchrun runs it like `-m pmv`.
HELPER = textwrap.dedent(
    '''
    import os, sys, time
    import torch, torch.nn as nn
    from pmv.models.registry import register_model
    import pmv.engine.trainer as trainer

    NOISE = float(os.environ.get("FAKE_NOISE", "0.1"))
    DELAY = float(os.environ.get("FAKE_DELAY", "0"))

    class FakeClips(torch.utils.data.Dataset):
        """Class c: a clip whose mean is +1 in channel c % 3 and -1 elsewhere, plus augmentation noise."""
        def __init__(self, n, seed, num_classes=3):
            g = torch.Generator().manual_seed(seed)
            self.labels = torch.randint(0, num_classes, (n,), generator=g).tolist()
            self.base = torch.randn(n, 3, 2, 4, 4, generator=g) * 0.3
            self.num_classes, self.class_names = num_classes, [f"class{i}" for i in range(num_classes)]
            self.paths = [f"fake{i}.mp4" for i in range(n)]
        def __len__(self):
            return len(self.labels)
        def __getitem__(self, key):
            # Training keys are (index, seed) from the sampler, like pmv's datasets take them.
            i, seed = key if isinstance(key, tuple) else (key, None)
            if DELAY:
                time.sleep(DELAY)
            clip = self.base[i].clone()
            clip[self.labels[i] % 3] += 1.0
            if NOISE and seed is not None:
                g = torch.Generator().manual_seed(seed)
                clip += NOISE * torch.randn(clip.shape, generator=g)  # augmentation keyed by the item
            return {"clip": clip, "label": self.labels[i], "index": i, "temporal_view": 0, "spatial_view": 1,
                    "valid": True}

    @register_model
    def engine_test_mlp(num_classes=3, input_size=(2, 4, 4), dropout=0.0, **_):
        return nn.Sequential(nn.Flatten(), nn.Linear(3 * 2 * 4 * 4, 16), nn.Tanh(), nn.Linear(16, num_classes))

    class FakeViews(FakeClips):
        """Test views: item i is view i % 2 of video i // 2 (no noise: scores must not depend on the rank)."""
        def __len__(self):
            return 2 * len(self.labels)
        def __getitem__(self, i):
            item = FakeClips.__getitem__(self, i // 2)
            item["clip"] = item["clip"] + 0.05 * (i % 2)
            item.update(temporal_view=i % 2, valid=True)
            return item

    import pmv.data.dataset
    trainer.build_datasets = lambda data, transform, test: (FakeClips(48, 1), FakeClips(12, 2))
    pmv.data.dataset.build_test_dataset = lambda data, test, split: FakeViews(7, 4)  # 14 views over 2 ranks

    from pmv.cli.main import main
    sys.exit(main(sys.argv[1:]))
    '''
)

RECIPE = textwrap.dedent(
    """
    model: {name: engine_test_mlp, num_classes: 3, dropout: 0.0}
    data: {num_frames: 2}
    transform: {train_crop: [4, 4]}
    optim: {method: sgd, base_lr: 0.2, warmup_epochs: 1, warmup_start_lr: 0.02, weight_decay: 0.0001,
            clip_grad_norm: 5.0}
    train: {epochs: 3, batch_size: 4, num_workers: 0, deterministic: true, log_period: 2, keep_last: 50,
            tensorboard: false, seed: 3}
    test: {batch_size: 6, num_temporal_views: 1, crop: [4, 4]}
    """
)


@pytest.fixture()
def helper(tmp_path):
    script = tmp_path / "fake_pmv.py"
    script.write_text(HELPER)
    recipe = tmp_path / "fake.yaml"
    recipe.write_text(RECIPE)
    return script, recipe


def env(**extra):
    e = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT / "src"))
    e.update({k: str(v) for k, v in extra.items()})
    return e


def final_state(run_dir):
    return ckpt.read_checkpoint(ckpt.list_checkpoints(run_dir)[-1])


def test_train_writes_run_files_and_learns(tmp_path, helper):
    script, recipe = helper
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, str(script), "train", "--config", str(recipe), f"train.output_dir={out}"],
                          capture_output=True, text=True, env=env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "trained 3 epochs (36 steps)" in proc.stdout
    records = read_metrics(out)
    kinds = [r["kind"] for r in records]
    assert kinds.count("epoch") == 3 and kinds.count("val") == 3 and "train" in kinds
    vals = [r for r in records if r["kind"] == "val"]
    assert vals[-1]["top1"] >= 90.0
    first = next(r for r in records if r["kind"] == "train")
    assert {"loss", "lr", "top1", "clips_per_s", "grad_norm", "epoch"} <= set(first)
    assert (out / "config.yaml").exists() and (out / "train.log").exists()
    state = ckpt.read_checkpoint(out / "checkpoints" / ckpt.BEST_NAME)
    assert state["class_names"] == ["class0", "class1", "class2"]
    assert state["config"]["model"]["name"] == "engine_test_mlp"
    assert [p.name for p in ckpt.list_checkpoints(out)] == [ckpt.checkpoint_name(e, 0) for e in (1, 2, 3)]

    # --resume from the epoch-1 checkpoint into a new folder replays epochs 2-3 exactly.
    again = tmp_path / "again"
    proc = subprocess.run([sys.executable, str(script), "train", "--config", str(recipe), f"train.output_dir={again}",
                           "--resume", str(ckpt.list_checkpoints(out)[0])],
                          capture_output=True, text=True, env=env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert [r["kind"] for r in read_metrics(again)].count("epoch") == 2
    a, b = final_state(out), final_state(again)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])



def run_uninterrupted(command, out):
    done = subprocess.run([*command, f"train.output_dir={out}"], capture_output=True, text=True,
                          env=env(FAKE_DELAY=0.01), timeout=180)
    assert done.returncode == 0, done.stderr
    return out


def test_sigkill_mid_run_then_resume_matches_uninterrupted_run(tmp_path, helper):
    # With loader workers: item augmentation is keyed by (seed, epoch, video), so it replays after a resume.
    script, recipe = helper
    common = [sys.executable, str(script), "train", "--config", str(recipe), "train.checkpoint_steps=3",
              "train.num_workers=2"]
    straight = run_uninterrupted(common, tmp_path / "straight")

    broken = tmp_path / "broken"
    proc = subprocess.Popen([*common, f"train.output_dir={broken}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env(FAKE_DELAY=0.01))
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            names = [p.name for p in ckpt.list_checkpoints(broken)]
            if ckpt.checkpoint_name(1, 6) in names:  # epoch 2 of 3, mid-epoch
                break
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    names = [p.name for p in ckpt.list_checkpoints(broken)]
    assert ckpt.checkpoint_name(3, 0) not in names
    # What a kill during a save leaves behind: a hidden temp file. It must not be picked up.
    (broken / "checkpoints" / f".{ckpt.checkpoint_name(2, 9)}.x.tmp").write_bytes(b"PK\x03\x04 half")

    resumed = subprocess.run([*common, f"train.output_dir={broken}"], capture_output=True, text=True,
                             env=env(FAKE_DELAY=0.01), timeout=180)
    assert resumed.returncode == 0, resumed.stderr
    assert "auto-resuming from" in resumed.stderr
    a, b = final_state(straight), final_state(broken)
    assert a["global_step"] == b["global_step"] == 36
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    momentum_a = [s["momentum_buffer"] for s in a["optimizer"]["state"].values()]
    momentum_b = [s["momentum_buffer"] for s in b["optimizer"]["state"].values()]
    assert all(torch.equal(x, y) for x, y in zip(momentum_a, momentum_b))


def wait_for_checkpoint(run_dir, name, proc, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if name in [p.name for p in ckpt.list_checkpoints(run_dir)]:
            return True
        time.sleep(0.005)
    return False


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGUSR1"])
def test_preemption_signal_writes_a_checkpoint_and_the_rerun_resumes(tmp_path, helper, signal_name):
    script, recipe = helper
    common = [sys.executable, str(script), "train", "--config", str(recipe), "train.checkpoint_period=5",
              "train.num_workers=2"]
    straight = run_uninterrupted(common, tmp_path / "straight")

    run = tmp_path / "run"
    proc = subprocess.Popen([*common, f"train.output_dir={run}", "train.checkpoint_steps=4"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env(FAKE_DELAY=0.01))
    assert wait_for_checkpoint(run, ckpt.checkpoint_name(0, 8), proc), "the run ended before the signal"
    proc.send_signal(getattr(signal, signal_name))
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 75, stderr
    assert f"{signal_name} received: stopped at epoch" in stderr and "Run the same command again" in stderr
    assert "Traceback" not in stderr
    last = ckpt.list_checkpoints(run)[-1]
    state = ckpt.read_checkpoint(last)
    # The stop lands on the next step boundary: the one just checkpointed (8) or a later one.
    assert state["global_step"] >= 8 and last.name == ckpt.checkpoint_name(state["epoch"], state["step_in_epoch"])

    resumed = subprocess.run([*common, f"train.output_dir={run}"], capture_output=True, text=True,
                             env=env(FAKE_DELAY=0.01), timeout=180)
    assert resumed.returncode == 0, resumed.stderr
    assert f"auto-resuming from {last}" in resumed.stderr
    a, b = final_state(straight), final_state(run)
    assert a["global_step"] == b["global_step"] == 36
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_sigterm_under_torchrun_stops_every_rank_at_the_same_step(tmp_path, helper):
    script, recipe = helper
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
                             str(script), "train", "--config", str(recipe), "train.batch_size=2",
                             "train.checkpoint_steps=5", f"train.output_dir={run}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(FAKE_DELAY=0.01),
                            start_new_session=True)
    assert wait_for_checkpoint(run, ckpt.checkpoint_name(0, 5), proc, timeout=180), "the run ended before the signal"
    os.killpg(proc.pid, signal.SIGTERM)  # what a scheduler does: the whole job gets it
    _, stderr = proc.communicate(timeout=120)
    assert "SIGTERM received: stopped at epoch" in stderr, stderr[-3000:]
    state = ckpt.read_checkpoint(ckpt.list_checkpoints(run)[-1])
    assert len(state["rng"]) == 2 and state["global_step"] >= 5
    # Each rank's step count went into the saved state together: resuming replays to the planned end.
    resumed = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
                              str(script), "train", "--config", str(recipe), "train.batch_size=2",
                              f"train.output_dir={run}"], capture_output=True, text=True, env=env(), timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    final = [r for r in read_metrics(run) if r["kind"] == "final"][-1]
    assert final["params_max_rank_diff"] == 0.0 and final_state(run)["global_step"] == 36


def test_two_process_torchrun_matches_one_process_with_same_global_batch(tmp_path, helper):
    script, recipe = helper
    one = tmp_path / "one"
    two = tmp_path / "two"
    args = ["train", "--config", str(recipe), "train.epochs=2"]
    single = subprocess.run([sys.executable, str(script), *args, "train.batch_size=4", f"train.output_dir={one}"],
                            capture_output=True, text=True, env=env(FAKE_NOISE=0), timeout=180)
    assert single.returncode == 0, single.stderr
    multi = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                            "--standalone", str(script), *args, "train.batch_size=2",
                            f"train.output_dir={two}"],
                           capture_output=True, text=True, env=env(FAKE_NOISE=0), timeout=300)
    assert multi.returncode == 0, multi.stderr[-3000:]
    final = [r for r in read_metrics(two) if r["kind"] == "final"][0]
    assert final["params_max_rank_diff"] == 0.0
    a, b = final_state(one), final_state(two)
    assert a["global_step"] == b["global_step"] == 24 and b["world_size"] == 2
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=1e-5, atol=1e-6)
    vals_one = [r["top1"] for r in read_metrics(one) if r["kind"] == "val"]
    vals_two = [r["top1"] for r in read_metrics(two) if r["kind"] == "val"]
    assert vals_one == vals_two  # all-reduced validation over 2 shards = the 1-process numbers

    # The multi-view test on 2 ranks: 7 videos x 2 views, sharded unevenly, gathered with no view counted twice.
    best = str(two / "checkpoints" / ckpt.BEST_NAME)
    test_args = ["test", "--checkpoint", best, "--views", "2x1"]
    multi = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
                            str(script), *test_args, "--out", str(tmp_path / "t2")],
                           capture_output=True, text=True, env=env(FAKE_NOISE=0), timeout=300)
    assert multi.returncode == 0, multi.stderr[-3000:]
    single = subprocess.run([sys.executable, str(script), *test_args, "--out", str(tmp_path / "t1")],
                            capture_output=True, text=True, env=env(FAKE_NOISE=0), timeout=120)
    assert single.returncode == 0, single.stderr[-3000:]
    npz = [np.load(tmp_path / t / "predictions_2x1.npz") for t in ("t1", "t2")]
    assert npz[1]["view_counts"].tolist() == [2] * 7
    np.testing.assert_allclose(npz[0]["scores"], npz[1]["scores"], rtol=1e-5)
    assert multi.stdout.count("report:") == 1  # only rank 0 prints and writes
