"""`pmv export`: ONNX (through onnxruntime), TorchScript and torch.export round trips on real decoded clips, for a
trained checkpoint and for the paper's three models (X3D-M, MViTv2-S with rectangular rel-pos, UniFormer-S)."""

import json

import numpy as np
import pytest
import torch

from inference_helpers import trained_run
from pmv.cli.main import main
from pmv.engine.export import ExportError, example_clips, export_model, load_runner
from pmv.engine.predictor import ClipDecoder, InputSpec, Predictor
from pmv.models.registry import create_model


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return trained_run(tmp_path_factory.getbasetemp())


def test_cli_exports_a_trained_checkpoint_in_every_format(run, tmp_path, capsys):
    predictor = Predictor.from_checkpoint(run.checkpoint, device="cpu")
    video = sorted(run.data_root.glob("test_*.mp4"))[0]
    clips = ClipDecoder(predictor.spec)(str(video)).clips  # 6 real views (2 temporal x 3 crops)
    expected = predictor.view_logits(clips).numpy()
    for fmt, file_name in (("onnx", "model.onnx"), ("torchscript", "model.torchscript.pt"),
                           ("exported", "model.pt2")):
        out = tmp_path / fmt
        assert main(["export", "--checkpoint", str(run.checkpoint), "--format", fmt, "--out", str(out),
                     "--video", str(video)]) == 0
        printed = capsys.readouterr().out
        assert "max abs diff" in printed and file_name in printed
        manifest = json.loads((out / "pmv.json").read_text())
        assert manifest["format"] == fmt and manifest["file"] == file_name and (out / file_name).is_file()
        assert manifest["input"] == {"name": "clip", "layout": "N x C x T x H x W", "dtype": "float32",
                                     "batch": "dynamic", "channels": 3, "frames": 4, "height": 48, "width": 36}
        assert manifest["class_names"] == run.class_names and manifest["model"] == "tiny"
        assert manifest["normalisation"]["mean"] == [0.45] * 3
        assert manifest["views"]["temporal"] == 2 and manifest["views"]["spatial"] == 3
        assert manifest["check"]["max_abs_diff"] < 1e-3 and manifest["check"]["batch"] == 3
        assert InputSpec.from_dict(manifest["spec"]) == predictor.spec
        runner, _, runtime = load_runner(out)
        got = runner(clips.numpy())  # a batch of 6: the batch size is dynamic
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)
        if fmt == "onnx":
            assert runtime == "onnxruntime" and manifest["onnx"]["exporter"] in ("dynamo", "legacy")


def test_export_errors(run, tmp_path, capsys):
    assert main(["export", "--checkpoint", str(run.checkpoint), "--format", "onnx", "--out", str(tmp_path / "x"),
                 "--video", str(tmp_path / "missing.mp4")]) == 2
    assert "cannot decode the check video" in capsys.readouterr().err
    with pytest.raises(ExportError, match="not a pmv export"):
        load_runner(tmp_path)


PAPER_MODELS = {
    # name: (input T x H x W, builder options). Every kind of block is kept (X3D's bottlenecks with squeeze-excite,
    # MViTv2's pooling attention with rel-pos, UniFormer's conv and attention stages) at reduced depth, so the tests
    # fit two shared CPU cores; the full-depth networks export the same way (docs/inference.md has the times).
    "x3d_m": ((4, 64, 48), {"depth_factor": 0.5}),
    "mvitv2_s": ((4, 96, 64), {"stage_depths": [1, 1, 1, 1]}),  # rectangular: 3 x 2 tokens after the stem
    "uniformer_s": ((4, 64, 48), {"stage_depths": [1, 1, 1, 1]}),
}


def _spec(size):
    return InputSpec(num_frames=size[0], sampling_rate=2, crop=tuple(size[1:]), short_side=size[2],
                     mean=(0.45,) * 3, std=(0.225,) * 3, temporal_views=1, spatial_views=3)


@pytest.mark.parametrize("name", list(PAPER_MODELS))
def test_paper_models_export_to_onnx_and_torchscript(name, tmp_path):
    size, options = PAPER_MODELS[name]
    torch.manual_seed(0)
    model = create_model(name, num_classes=7, input_size=size, **options)
    spec = _spec(size)
    names = [f"class {i}" for i in range(7)]
    clips, _ = example_clips(spec, None, 4)
    expected = model.eval()(clips).detach().numpy()
    for fmt in ("onnx", "torchscript"):
        # the TorchScript-based ONNX exporter: the dynamo one is covered by the CLI test and is slow on two cores
        result = export_model(model, spec, names, fmt, tmp_path / fmt, model_name=name, onnx_exporter="legacy")
        assert result.max_abs_diff < 1e-3
        runner, manifest, _ = load_runner(tmp_path / fmt)
        assert manifest["input"]["height"] == size[1] and manifest["input"]["width"] == size[2]
        np.testing.assert_allclose(runner(clips.numpy()), expected, atol=1e-3, rtol=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mvitv2_s", "uniformer_s"])  # a CNN's torch.export: the CLI test's tiny model
def test_paper_models_export_with_torch_export(name, tmp_path):
    size, reduced = PAPER_MODELS[name]
    torch.manual_seed(0)
    model = create_model(name, num_classes=7, input_size=size, **reduced)
    result = export_model(model, _spec(size), [str(i) for i in range(7)], "exported", tmp_path, model_name=name)
    assert result.max_abs_diff < 1e-3 and result.checked_with == "torch.export"
    assert (tmp_path / "model.pt2").is_file()
