"""Export a model for use without pmv: ONNX, TorchScript or ``torch.export`` (``.pt2``), plus ``pmv.json``.

``pmv.json`` makes the export self-describing: the input (N x 3 x T x H x W float32, dynamic N), the normalisation,
how clips are sampled and cropped (the test views along the long side) and the class names. Before an export is
reported as done it is loaded back and run on clips decoded from a real video, and compared with eager PyTorch;
the largest absolute difference of the logits is recorded (ONNX is checked with onnxruntime when installed).

The example batch has 2 clips and the check runs 3, so a batch size frozen into the graph is caught.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

import pmv
from pmv.engine.predictor import ClipDecoder, InputSpec, Predictor
from pmv.errors import PmvError
from pmv.utils import atomic_output, atomic_write_text

log = logging.getLogger(__name__)

FORMATS = {"onnx": "model.onnx", "torchscript": "model.torchscript.pt", "exported": "model.pt2"}
ONNX_EXPORTERS = ("auto", "dynamo", "legacy")
MANIFEST = "pmv.json"
MANIFEST_VERSION = 1
EXAMPLE_BATCH, CHECK_BATCH = 2, 3


class ExportError(PmvError):
    """An export failed, or the exported model does not reproduce the eager model's output."""


@dataclass
class ExportResult:
    format: str
    out_dir: Path
    model_path: Path
    manifest_path: Path
    max_abs_diff: float
    onnx_exporter: str  # the ONNX exporter used ("" for other formats)
    checked_with: str  # the runtime that ran the export for the check (onnxruntime, torch.jit, torch.export)
    check_batch: int
    seconds: float
    notes: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------------------ example clips
def write_probe_video(path: str | os.PathLike, height: int = 128, width: int = 72, frames: int = 32,
                      fps: int = 15) -> Path:
    """A small portrait H.264 video with moving content, for checking an export when no video is given."""
    import av

    yy, xx = np.mgrid[0:height, 0:width]
    with atomic_output(path, suffix=".mp4") as tmp:
        with av.open(str(tmp), "w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=fps)
            stream.height, stream.width, stream.pix_fmt = height, width, "yuv420p"
            for i in range(frames):
                image = np.stack([(xx * 3 + i * 8) % 256, (yy * 2 + i * 5) % 256,
                                  ((xx + yy) * 2 + i * 11) % 256], axis=-1).astype(np.uint8)
                for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    return Path(path)


def example_clips(spec: InputSpec, video: str | os.PathLike | None, count: int) -> tuple[torch.Tensor, str]:
    """``count`` clips decoded from ``video`` (a synthetic portrait video when None) with the test protocol; views
    are repeated when the video has fewer."""
    with tempfile.TemporaryDirectory(prefix="pmv-export-") as tmp:
        source = str(video) if video else str(write_probe_video(Path(tmp) / "probe.mp4"))
        spec3 = spec if spec.temporal_views * spec.spatial_views >= count else spec.with_views(f"{count}x1")
        decoded = ClipDecoder(spec3)(source)
    if decoded.error:
        raise ExportError(f"cannot decode the check video: {decoded.error}")
    clips = decoded.clips
    rows = torch.arange(count) % clips.shape[0]
    return clips[rows].contiguous(), (str(video) if video else "a synthetic portrait video")


# ------------------------------------------------------------------------------------------------ writers
def _export_onnx(model: nn.Module, example: torch.Tensor, path: Path, exporter: str, opset: int) -> str:
    """Write ``path`` with ``exporter``; ``auto`` tries the dynamo exporter, then the TorchScript-based one (some
    ops, e.g. adaptive 3-D pooling to a non-unit size, have no dynamo translation yet). Returns the one used."""
    if importlib.util.find_spec("onnx") is None:
        raise ExportError("exporting to ONNX needs the onnx package: pip install 'pmv[onnx]'")
    if exporter not in ONNX_EXPORTERS:
        raise ExportError(f"unknown ONNX exporter {exporter!r}; use one of {', '.join(ONNX_EXPORTERS)}")
    if exporter == "auto":
        if importlib.util.find_spec("onnxscript") is None:
            return _export_onnx(model, example, path, "legacy", opset)
        try:
            return _export_onnx(model, example, path, "dynamo", opset)
        except Exception as err:  # noqa: BLE001 - any conversion failure: try the other exporter
            lines = [line for line in str(err).splitlines() if line.startswith("<class")] or [type(err).__name__]
            log.info("the dynamo ONNX exporter failed (%s); trying the TorchScript-based one", lines[0][:300])
            return _export_onnx(model, example, path, "legacy", opset)
    kwargs: dict = dict(input_names=["clip"], output_names=["logits"], opset_version=opset)
    if exporter == "dynamo":
        if importlib.util.find_spec("onnxscript") is None:  # the dynamo exporter writes through it
            raise ExportError("the dynamo ONNX exporter needs onnxscript: pip install 'pmv[onnx]' "
                              "(or use --onnx-exporter legacy)") from None
        kwargs.update(dynamo=True, dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1024)},),
                      external_data=False, verbose=False)
    else:
        kwargs.update(dynamo=False, dynamic_axes={"clip": {0: "batch"}, "logits": {0: "batch"}})
    onnx_log = logging.getLogger("torch.onnx")
    level = onnx_log.level
    onnx_log.setLevel(logging.ERROR)  # it warns about optional torchvision ops, which pmv models do not use
    try:
        with atomic_output(path, suffix=".onnx") as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracing details that do not apply here
            torch.onnx.export(model, (example,), str(tmp), **kwargs)
    finally:
        onnx_log.setLevel(level)
    return exporter


def _export_torchscript(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    with warnings.catch_warnings():
        # tracing details, and torch's deprecation notice for TorchScript (still the format many runtimes load)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace(model, (example,), check_trace=False)
        with atomic_output(path, suffix=".pt") as tmp:
            torch.jit.save(traced, str(tmp))


def _export_program(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    program = torch.export.export(model, (example,),
                                  dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1024)},))
    with atomic_output(path, suffix=".pt2") as tmp:
        torch.export.save(program, str(tmp))


# ------------------------------------------------------------------------------------------------ loading
def load_runner(out_dir: str | os.PathLike) -> tuple[Callable[[np.ndarray], np.ndarray], dict, str]:
    """``(run, manifest, runtime)`` for an export folder: ``run(clips N x 3 x T x H x W float32) -> logits``."""
    folder = Path(out_dir)
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ExportError(f"{folder} is not a pmv export ({MANIFEST}: {err})") from None
    fmt, path = manifest["format"], folder / manifest["file"]
    if fmt == "onnx":
        try:
            import onnxruntime as ort
        except ImportError:
            raise ExportError("running an ONNX export needs onnxruntime: pip install 'pmv[onnx]'") from None
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return (lambda clips: session.run(None, {name: np.ascontiguousarray(clips, np.float32)})[0]), manifest, \
            "onnxruntime"
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch's notice that TorchScript is deprecated
            module = torch.jit.load(str(path), map_location="cpu").eval()
        runtime = "torch.jit"
    elif fmt == "exported":
        module = torch.export.load(str(path)).module()
        runtime = "torch.export"
    else:
        raise ExportError(f"{folder / MANIFEST}: unknown format {fmt!r}")

    @torch.no_grad()
    def run(clips: np.ndarray) -> np.ndarray:
        return module(torch.from_numpy(np.ascontiguousarray(clips, np.float32))).numpy()

    return run, manifest, runtime


# ------------------------------------------------------------------------------------------------ export
def _manifest(fmt: str, file_name: str, spec: InputSpec, class_names: Sequence[str], model_name: str,
              source: str, exporter: str, opset: int) -> dict:
    return {
        "pmv_export": MANIFEST_VERSION,
        "pmv_version": pmv.__version__,
        "torch_version": torch.__version__,
        "format": fmt,
        "file": file_name,
        "model": model_name,
        "checkpoint": source,
        **({"onnx": {"exporter": exporter, "opset": opset}} if fmt == "onnx" else {}),
        "input": {"name": "clip", "layout": "N x C x T x H x W", "dtype": "float32", "batch": "dynamic",
                  "channels": 3, "frames": spec.num_frames, "height": spec.crop[0], "width": spec.crop[1]},
        "output": {"name": "logits", "layout": "N x classes", "classes": len(class_names)},
        "normalisation": {"scale": "pixels / 255", "mean": list(spec.mean), "std": list(spec.std),
                          "channel_order": "RGB"},
        "sampling": {"frames": spec.num_frames, "stride": spec.sampling_rate, "target_fps": spec.target_fps,
                     "offset_sampling": spec.offset_sampling},
        "resize": {"short_side": spec.short_side, "auto_adjust": spec.auto_adjust},
        "views": {"temporal": spec.temporal_views, "spatial": spec.spatial_views,
                  "spatial_index": spec.spatial_index, "placement": "along the long side (top/centre/bottom on "
                  "portrait frames)", "aggregation": spec.aggregation},
        "spec": spec.to_dict(),
        "class_names": list(class_names),
    }


def export_model(model: nn.Module, spec: InputSpec, class_names: Sequence[str], fmt: str,
                 out_dir: str | os.PathLike, *, video: str | os.PathLike | None = None, model_name: str = "",
                 source: str = "", onnx_exporter: str = "auto", opset: int = 18,
                 atol: float = 1e-3, rtol: float = 1e-3) -> ExportResult:
    """Export ``model`` (moved to the CPU, eval mode) to ``out_dir`` in ``fmt`` and check it on a real clip."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    started = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = model.to("cpu").eval()
    clips, video_name = example_clips(spec, video, EXAMPLE_BATCH + CHECK_BATCH)
    example, check = clips[:EXAMPLE_BATCH], clips[EXAMPLE_BATCH:]
    path = out / FORMATS[fmt]
    manifest_path = out / MANIFEST
    manifest_path.unlink(missing_ok=True)  # a folder without a checked manifest is not a finished export
    try:
        with torch.no_grad():
            if fmt == "onnx":
                onnx_exporter = _export_onnx(model, example, path, onnx_exporter, opset)
            elif fmt == "torchscript":
                _export_torchscript(model, example, path)
            else:
                _export_program(model, example, path)
    except ExportError:
        raise
    except Exception as err:  # the exporters raise many types; report which model and format failed, and why
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ExportError(f"exporting {model_name or type(model).__name__} to {fmt} failed: "
                          f"{type(err).__name__}: {first[:500]}") from err
    manifest = _manifest(fmt, path.name, spec, class_names, model_name, source, onnx_exporter, opset)
    atomic_write_text(manifest_path, json.dumps(manifest, indent=2) + "\n")
    try:
        run, _, runtime = load_runner(out)
        with torch.no_grad():
            expected = model(check).numpy()
        got = run(check.numpy())
    except ExportError:
        manifest_path.unlink(missing_ok=True)
        raise
    except Exception as err:
        manifest_path.unlink(missing_ok=True)
        raise ExportError(f"the {fmt} export of {model_name} does not run on a batch of {CHECK_BATCH} clips: "
                          f"{type(err).__name__}: {str(err).strip()[:500]}") from err
    if got.shape != expected.shape:
        manifest_path.unlink(missing_ok=True)
        raise ExportError(f"the {fmt} export gives logits of shape {got.shape}, eager PyTorch {expected.shape}")
    diff = float(np.abs(got - expected).max())
    if not np.allclose(got, expected, atol=atol, rtol=rtol):
        manifest_path.unlink(missing_ok=True)
        raise ExportError(f"the {fmt} export differs from eager PyTorch by up to {diff:.3g} (allowed {atol} + "
                          f"{rtol} x |logit|); the export is not trustworthy")
    manifest["check"] = {"max_abs_diff": diff, "batch": CHECK_BATCH, "runtime": runtime, "video": video_name}
    atomic_write_text(manifest_path, json.dumps(manifest, indent=2) + "\n")
    return ExportResult(format=fmt, out_dir=out, model_path=path, manifest_path=manifest_path, max_abs_diff=diff,
                        onnx_exporter=onnx_exporter if fmt == "onnx" else "",
                        checked_with=runtime, check_batch=CHECK_BATCH, seconds=time.perf_counter() - started)


def export_checkpoint(checkpoint: str | os.PathLike, fmt: str, out_dir: str | os.PathLike, *,
                      config_path: Optional[str] = None, overrides: Sequence[str] = (), class_names=None,
                      views: Optional[str] = None, video: Optional[str] = None, use_ema: bool = False,
                      onnx_exporter: str = "auto", opset: int = 18) -> ExportResult:
    """``pmv export``: the model a checkpoint describes, exported for its test input size."""
    predictor = Predictor.from_checkpoint(checkpoint, config_path=config_path, overrides=overrides,
                                          class_names=class_names, views=views, device="cpu", use_ema=use_ema,
                                          model_options={})
    return export_model(predictor.model, predictor.spec, predictor.class_names, fmt, out_dir, video=video,
                        model_name=predictor.model_name, source=str(checkpoint), onnx_exporter=onnx_exporter,
                        opset=opset)
