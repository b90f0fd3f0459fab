"""Checkpoint loading: PySlowFast .pyth, UniFormer .pth, pmv and plain state dicts; strict report; head re-init."""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn as nn

from pmv.errors import CheckpointError
from pmv.models import create_model
from pmv.models.checkpoint import (
    classifier_keys,
    load_checkpoint,
    read_checkpoint_file,
    save_pyslowfast_checkpoint,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


@pytest.fixture(scope="module")
def trained_x3d():
    """An X3D-M whose weights and BN statistics all differ from a fresh model's."""
    torch.manual_seed(0)
    model = create_model("x3d_m", num_classes=5)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(torch.rand_like(tensor) * 0.1)
    return model.eval()


def test_pyslowfast_pyth_round_trip_loads_strictly_with_identical_outputs(tmp_path, trained_x3d):
    path = save_pyslowfast_checkpoint(trained_x3d, tmp_path / "x3d_m.pyth", epoch=7)
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"model_state", "epoch"} and raw["epoch"] == 7
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write leaves no temp file

    fresh = create_model("x3d_m", num_classes=5).eval()
    report = load_checkpoint(path, fresh)
    assert report.ok and report.format == "pyslowfast" and report.epoch == 7
    assert len(report.loaded) == 568 and report.reinitialized == []
    clip = torch.randn(2, 3, 4, 64, 48)
    with torch.no_grad():
        assert torch.equal(fresh(clip), trained_x3d(clip))


def test_other_layouts_and_wrapper_prefixes(tmp_path, trained_x3d):
    state = trained_x3d.state_dict()
    ddp_state = {f"module.{k}": v for k, v in state.items()}
    cases = {
        "uniformer.pth": ({"model": ddp_state}, "uniformer"),
        "pmv.pt": ({"model": state, "config": {"model": {"name": "x3d_m"}}, "class_names": list("abcde")}, "pmv"),
        "plain.pth": (ddp_state, "state_dict"),
        "nested.pth": ({"state_dict": state}, "state_dict"),
    }
    for name, (payload, expected_format) in cases.items():
        torch.save(payload, tmp_path / name)
        model = create_model("x3d_m", num_classes=5)
        report = load_checkpoint(tmp_path / name, model)
        assert report.ok and report.format == expected_format, name
        assert torch.equal(model.head.projection.weight, trained_x3d.head.projection.weight)
    assert load_checkpoint(tmp_path / "pmv.pt", create_model("x3d_m", num_classes=5)).class_names == list("abcde")
    # An in-memory dict is accepted too.
    assert load_checkpoint({"model_state": state}, create_model("x3d_m", num_classes=5)).ok


def test_class_count_mismatch_reinitialises_head_with_warning(tmp_path, trained_x3d, caplog):
    path = save_pyslowfast_checkpoint(trained_x3d, tmp_path / "k5.pyth")
    torch.manual_seed(1)
    model = create_model("x3d_m", num_classes=3)
    with caplog.at_level(logging.WARNING, logger="pmv.models.checkpoint"):
        report = load_checkpoint(path, model)
    assert report.ok
    assert report.reinitialized == ["head.projection.bias", "head.projection.weight"]
    assert "re-initialising the classifier" in caplog.text and "5 classes" in caplog.text
    # Backbone loaded, classifier fresh (PySlowFast's std 0.01 normal, zero bias).
    assert torch.equal(model.head.lin_5.weight, trained_x3d.head.lin_5.weight)
    assert model.head.projection.weight.shape == (3, 2048)
    assert torch.count_nonzero(model.head.projection.bias) == 0
    assert 0.005 < model.head.projection.weight.std().item() < 0.015

    with pytest.raises(CheckpointError, match="head.projection.weight: checkpoint \\[5, 2048\\] vs model \\[3, 2048\\]"):
        load_checkpoint(path, create_model("x3d_m", num_classes=3), allow_head_mismatch=False)


def test_strict_failure_report_names_keys_and_shapes(tmp_path, trained_x3d):
    state = dict(trained_x3d.state_dict())
    del state["s3.pathway0_res2.branch2.b.weight"]
    state["s9.extra.weight"] = torch.zeros(2, 2)
    state["head.lin_5.weight"] = torch.zeros(1024, 432, 1, 1, 1)
    path = tmp_path / "broken.pyth"
    torch.save({"model_state": state}, path)
    model = create_model("x3d_m", num_classes=5)
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path, model)
    message = str(caught.value)
    assert str(path) in message
    assert "missing in checkpoint (1)" in message and "s3.pathway0_res2.branch2.b.weight [108, 1, 3, 3, 3]" in message
    assert "unexpected in checkpoint (1)" in message and "s9.extra.weight [2, 2]" in message
    assert "head.lin_5.weight: checkpoint [1024, 432, 1, 1, 1] vs model [2048, 432, 1, 1, 1]" in message
    assert "strict=False" in message  # says how to proceed

    before = model.head.lin_5.weight.clone()
    report = load_checkpoint(path, model, strict=False)
    assert not report.ok and report.missing == ["s3.pathway0_res2.branch2.b.weight"]
    assert torch.equal(model.head.lin_5.weight, before)  # mismatched tensor left alone
    assert torch.equal(model.s2.pathway0_res0.branch2.a.weight, trained_x3d.s2.pathway0_res0.branch2.a.weight)


def test_checkpoint_of_another_model_is_refused(tmp_path, trained_x3d):
    path = save_pyslowfast_checkpoint(trained_x3d, tmp_path / "x3d.pyth")
    with pytest.raises(CheckpointError, match="does not fit TinyVideoNet"):
        load_checkpoint(path, create_model("tiny", num_classes=5))


def test_unreadable_files_raise_checkpoint_error(tmp_path, trained_x3d):
    with pytest.raises(CheckpointError, match="not found"):
        read_checkpoint_file(tmp_path / "missing.pyth")
    garbage = tmp_path / "garbage.pyth"
    garbage.write_bytes(b"this is not a checkpoint" * 20)
    with pytest.raises(CheckpointError, match="is not a checkpoint: it is a text file"):
        load_checkpoint(garbage, trained_x3d)
    good = save_pyslowfast_checkpoint(trained_x3d, tmp_path / "good.pyth")
    truncated = tmp_path / "truncated.pyth"
    truncated.write_bytes(good.read_bytes()[:4096])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(truncated, trained_x3d)
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="not a dict of weights"):
        load_checkpoint(tmp_path / "list.pt", trained_x3d)
    torch.save({"optimizer": {"lr": 0.1}, "epoch": 3}, tmp_path / "noweights.pt")
    with pytest.raises(CheckpointError, match="no model weights.*top-level keys: epoch, optimizer"):
        load_checkpoint(tmp_path / "noweights.pt", trained_x3d)


class _Renamed(nn.Module):
    """A model whose checkpoint stores ``old.*``; its ``adapt_state_dict`` hook maps them to ``new.*``."""

    def __init__(self):
        super().__init__()
        self.new = nn.Linear(3, 2)
        self.calls = 0

    def adapt_state_dict(self, state):
        self.calls += 1
        return {k.replace("old.", "new."): v for k, v in state.items()}


def test_adapt_state_dict_hook_runs_before_the_check():
    model = _Renamed()
    weights = {"old.weight": torch.ones(2, 3), "old.bias": torch.zeros(2)}
    report = load_checkpoint({"model": weights}, model)
    assert model.calls == 1 and report.ok
    assert torch.equal(model.new.weight, torch.ones(2, 3))


def test_classifier_keys_find_the_final_linear():
    assert classifier_keys(create_model("tiny", num_classes=4)) == {"head.projection.weight", "head.projection.bias"}
    av = create_model("avslowfast_r50", num_classes=7)
    assert classifier_keys(av) == {"head.projection.weight", "head.projection.bias"}
