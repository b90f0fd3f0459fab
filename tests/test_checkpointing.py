import random

import numpy as np
import pytest
import torch

from pmv.engine import checkpointing as ckpt
from pmv.errors import CheckpointError


def state(step):
    return {"format": ckpt.FORMAT, "version": 1, "model": {"w": torch.full((3,), float(step))}, "step": step}


def test_atomic_save_leaves_no_temp_and_roundtrips(tmp_path):
    path = ckpt.atomic_save(state(1), tmp_path / "checkpoints" / ckpt.checkpoint_name(1, 0))
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    assert ckpt.read_checkpoint(path)["model"]["w"].tolist() == [1.0, 1.0, 1.0]


def test_half_written_checkpoints_are_never_picked_up(tmp_path, caplog):
    folder = tmp_path / "checkpoints"
    good = ckpt.atomic_save(state(2), folder / ckpt.checkpoint_name(1, 4))
    # A crash during a later save leaves a hidden temp file (never listed) ...
    (folder / f".{ckpt.checkpoint_name(2, 0)}.abc.tmp").write_bytes(good.read_bytes()[:100])
    # ... and a truncated final file (e.g. a copy cut short) is skipped with a warning.
    truncated = folder / ckpt.checkpoint_name(3, 0)
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == [good.name, truncated.name]
    with caplog.at_level("WARNING"):
        path, loaded = ckpt.latest_valid_checkpoint(tmp_path)
    assert path == good and loaded["step"] == 2
    assert "skipping damaged checkpoint" in caplog.text
    with pytest.raises(CheckpointError, match="truncated"):
        ckpt.read_checkpoint(truncated)


def test_foreign_file_is_rejected_with_a_hint(tmp_path):
    torch.save({"model_state": {}}, tmp_path / "seed.pyth")
    with pytest.raises(CheckpointError, match="model.pretrained"):
        ckpt.read_checkpoint(tmp_path / "seed.pyth")
    with pytest.raises(CheckpointError, match="not found"):
        ckpt.read_checkpoint(tmp_path / "missing.pt")


def test_ordering_and_pruning(tmp_path):
    for epoch, step in [(0, 5), (1, 0), (1, 5), (2, 0), (10, 0)]:
        ckpt.atomic_save(state(epoch), tmp_path / "checkpoints" / ckpt.checkpoint_name(epoch, step))
    ckpt.atomic_save(state(99), tmp_path / "checkpoints" / ckpt.BEST_NAME)
    names = [p.name for p in ckpt.list_checkpoints(tmp_path)]
    assert names[0] == ckpt.checkpoint_name(0, 5) and names[-1] == ckpt.checkpoint_name(10, 0)
    ckpt.prune_checkpoints(tmp_path, keep_last=2)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == [ckpt.checkpoint_name(2, 0), ckpt.checkpoint_name(10, 0)]
    assert (tmp_path / "checkpoints" / ckpt.BEST_NAME).exists()


def test_rng_state_roundtrip_through_weights_only_file(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    saved = ckpt.capture_rng_state()
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    ckpt.atomic_save({"format": ckpt.FORMAT, "model": {}, "rng": [saved]}, tmp_path / "c.pt")
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    ckpt.restore_rng_state(ckpt.read_checkpoint(tmp_path / "c.pt")["rng"][0])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
