"""Apply a trained model to new videos: the test protocol of ``pmv test``, one video at a time.

A :class:`Predictor` holds the model (loaded once) and an :class:`InputSpec`, the part of the recipe that says how
a video becomes clips: the test resize (``test.short_side``, ``test.auto_adjust``), the crop (H x W), the temporal
views (``test_clip`` of :mod:`pmv.data.sampling`) and the spatial views placed along the long side (top, centre,
bottom of a portrait frame), and how view scores are combined (``test.aggregation``). It is the same protocol as
the test dataset's decoder, built from the same public functions, so a file scores here as it does in ``pmv test``.

Decoding runs in worker processes (a data loader over the files) while the model scores the previous video; a file
that cannot be read gives a :class:`Prediction` with ``error`` set and the run goes on.
"""

from __future__ import annotations

import base64
import io
import logging
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Sequence

import av
import torch
import torch.nn as nn

from pmv.config import Config, TestConfig
from pmv.data import sampling
from pmv.data.transforms import functional as TF
from pmv.data.transforms.pipeline import TestTransform
from pmv.errors import CheckpointError, ConfigError, DataError, PmvError
from pmv.video.errors import VideoError
from pmv.video.reader import VideoReader

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".3gp", ".flv", ".ts")
LIST_SUFFIXES = (".txt", ".csv", ".lst")
AGGREGATIONS = ("softmax_sum", "softmax_max", "logits_sum")
CROP_NAMES = {True: ("top", "centre", "bottom"), False: ("left", "centre", "right")}  # portrait / not
# What a damaged or unreadable file raises while being read (ours, and whatever FFmpeg or the OS let through).
READ_ERRORS = (VideoError, DataError, av.error.FFmpegError, OSError, EOFError, RuntimeError, ValueError)


class PredictError(PmvError):
    """The inputs of a prediction run are wrong (no videos found, a bad list file, bad views)."""


# ------------------------------------------------------------------------------------------------ the input spec
@dataclass(frozen=True)
class InputSpec:
    """How a video becomes the model's clips (everything an export needs to be used without pmv)."""

    num_frames: int
    sampling_rate: int
    crop: tuple[int, int]  # H x W
    short_side: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    temporal_views: int = 1
    spatial_views: int = 1
    spatial_index: int = 1  # the crop used when there is one spatial view: 0 top/left, 1 centre, 2 bottom/right
    auto_adjust: bool = False
    target_fps: Optional[float] = None
    offset_sampling: bool = True
    aggregation: str = "softmax_sum"
    batch_size: int = 8

    @classmethod
    def from_config(cls, config: Config) -> "InputSpec":
        data, test = config.data, config.test
        crop = [test.crop] * 2 if isinstance(test.crop, int) else list(test.crop)
        if len(crop) == 1:
            crop = crop * 2
        if len(crop) != 2 or min(crop) <= 0:
            raise ConfigError(f"test.crop must be [height, width] with positive values, got {test.crop}")
        return cls(num_frames=data.num_frames, sampling_rate=data.sampling_rate, crop=(int(crop[0]), int(crop[1])),
                   short_side=test.short_side, mean=tuple(data.mean), std=tuple(data.std),
                   temporal_views=test.num_temporal_views, spatial_views=test.num_spatial_views,
                   spatial_index=test.spatial_index, auto_adjust=test.auto_adjust, target_fps=data.target_fps,
                   offset_sampling=data.offset_sampling, aggregation=test.aggregation,
                   batch_size=max(1, test.batch_size)).checked()

    def checked(self) -> "InputSpec":
        if self.temporal_views < 1 or self.spatial_views not in (1, 3):
            raise ConfigError(f"views {self.views}: need at least 1 temporal view and 1 or 3 spatial views "
                              "(3 crops sit along the long side)")
        if self.spatial_index not in (0, 1, 2):
            raise ConfigError(f"test.spatial_index must be 0, 1 or 2, got {self.spatial_index}")
        if self.aggregation not in AGGREGATIONS:
            raise ConfigError(f"test.aggregation {self.aggregation!r}: use one of {', '.join(AGGREGATIONS)}")
        return self

    @property
    def views(self) -> str:
        return f"{self.temporal_views}x{self.spatial_views}"

    @property
    def input_size(self) -> tuple[int, int, int]:
        return (self.num_frames, *self.crop)

    def with_views(self, views: Optional[str]) -> "InputSpec":
        """This spec with ``views`` = ``"TxS"`` (e.g. ``5x3``); None keeps the recipe's."""
        if not views:
            return self
        try:
            temporal, spatial = (int(v) for v in str(views).lower().split("x"))
        except ValueError:
            raise ConfigError(f"views {views!r} must look like TxS, e.g. 5x1 or 10x3") from None
        return replace(self, temporal_views=temporal, spatial_views=spatial).checked()

    def spatial_indices(self) -> list[int]:
        return [0, 1, 2] if self.spatial_views == 3 else [self.spatial_index]

    def test_config(self) -> TestConfig:
        return TestConfig(num_temporal_views=self.temporal_views, num_spatial_views=self.spatial_views,
                          spatial_index=self.spatial_index, short_side=self.short_side, crop=list(self.crop),
                          auto_adjust=self.auto_adjust, aggregation=self.aggregation, batch_size=self.batch_size)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["crop"] = list(self.crop)
        out["mean"], out["std"] = list(self.mean), list(self.std)
        out["views"] = self.views
        return out

    @classmethod
    def from_dict(cls, values: dict) -> "InputSpec":
        known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        known["crop"] = tuple(known["crop"])
        known["mean"], known["std"] = tuple(known["mean"]), tuple(known["std"])
        return cls(**known).checked()


# ------------------------------------------------------------------------------------------------ decoding
@dataclass
class DecodedVideo:
    """The clips of one video: ``clips`` V x C x T x H x W with ``views[i] = (temporal, spatial)``."""

    path: str
    clips: Optional[torch.Tensor] = None
    views: list[tuple[int, int]] = field(default_factory=list)
    boxes: dict[int, dict] = field(default_factory=dict)  # spatial index -> crop box, fractions of the frame
    video: dict = field(default_factory=dict)  # upright size, fps, frames, duration
    frame_png: Optional[bytes] = None  # a middle frame (upright), when asked for: the page draws the crops on it
    error: Optional[str] = None
    error_kind: Optional[str] = None  # the error class, e.g. NotAVideoError (the server maps it to a status)
    decode_s: float = 0.0


class ClipDecoder:
    """Turns a video file into the views of an :class:`InputSpec` (picklable: it runs in loader workers)."""

    def __init__(self, spec: InputSpec, frame_png_height: int = 0):
        self.spec = spec
        self.crop = spec.crop
        self.sizing = TestTransform(spec.test_config(), spec.mean, spec.std)  # the test resize rule
        self.frame_png_height = frame_png_height

    def __call__(self, path: str) -> DecodedVideo:
        started = time.perf_counter()
        result = DecodedVideo(path=str(path))
        try:
            self._decode(result)
        except READ_ERRORS as err:
            result.error = str(err) or type(err).__name__
            result.error_kind = type(err).__name__
            result.clips = None
        result.decode_s = time.perf_counter() - started
        return result

    def _decode(self, result: DecodedVideo) -> None:
        spec = self.spec
        path = result.path
        with VideoReader(path, threads=1) as probe:  # the upright size decides the decode size
            meta = probe.metadata
        height, width = self.sizing.resized_shape(meta.height, meta.width)
        options = {} if (height, width) == (meta.height, meta.width) else {"size": (height, width)}
        with VideoReader(path, threads=1, **options) as reader:
            samples = [
                sampling.test_clip(reader.num_frames, spec.num_frames, spec.sampling_rate, reader.metadata.fps, k,
                                   spec.temporal_views, spec.target_fps, spec.offset_sampling)
                for k in range(spec.temporal_views)
            ]
            wanted = sorted({i for sample in samples for i in sample.indices})
            frames = reader.get_frames(wanted)  # each frame decoded once, even where views overlap
            num_frames = reader.num_frames
        position = {frame: row for row, frame in enumerate(wanted)}
        spatial = spec.spatial_indices()
        clips = torch.empty((len(samples) * len(spatial), 3, spec.num_frames, *self.crop), dtype=torch.float32)
        views = []
        for k, sample in enumerate(samples):
            rows = torch.tensor([position[i] for i in sample.indices])
            clip = TF.thwc_to_cthw(frames.index_select(0, rows))
            for s in spatial:
                clips[len(views)] = TF.normalize(TF.long_side_crop(clip, self.crop, s), spec.mean, spec.std)
                views.append((k, s))
        portrait = height > width
        for s in spatial:
            top, left = TF.long_side_crop_offsets(height, width, self.crop, s)
            result.boxes[s] = {"index": s, "name": CROP_NAMES[portrait][s], "top": top / height,
                               "left": left / width, "height": self.crop[0] / height, "width": self.crop[1] / width}
        result.clips, result.views = clips, views
        result.video = {"height": meta.height, "width": meta.width, "fps": round(float(meta.fps), 3),
                        "num_frames": int(num_frames), "duration": round(float(meta.duration), 3),
                        "orientation": meta.orientation, "rotation": meta.rotation,
                        "decoded_size": [height, width]}
        if self.frame_png_height:
            result.frame_png = self._middle_frame_png(path, meta, num_frames)

    def _middle_frame_png(self, path: str, meta, num_frames: int) -> bytes:
        from PIL import Image

        out_h = min(self.frame_png_height, meta.height)
        out_w = max(2, round(meta.width * out_h / meta.height))
        with VideoReader(path, threads=1, size=(out_h, out_w)) as reader:
            frame = reader.get_frames([num_frames // 2])[0].numpy()
        buffer = io.BytesIO()
        Image.fromarray(frame).save(buffer, format="PNG")
        return buffer.getvalue()


# ------------------------------------------------------------------------------------------------ results
@dataclass
class Prediction:
    path: str
    top_k: list[dict] = field(default_factory=list)  # [{"label", "name", "prob"}], best first
    views: str = ""
    per_view: Optional[list[dict]] = None
    crops: Optional[list[dict]] = None  # per spatial crop: its box and its own top-1 over the temporal views
    video: dict = field(default_factory=dict)
    error: Optional[str] = None
    error_kind: Optional[str] = None
    decode_s: float = 0.0
    model_s: float = 0.0
    frame_png: Optional[bytes] = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict:
        out: dict[str, Any] = {"path": self.path, "ok": self.ok}
        if self.ok:
            out.update(top_k=self.top_k, views=self.views, video=self.video)
            if self.per_view is not None:
                out["per_view"] = self.per_view
            if self.crops is not None:
                out["crops"] = self.crops
            if self.frame_png is not None:
                out["frame"] = "data:image/png;base64," + base64.b64encode(self.frame_png).decode("ascii")
        else:
            out.update(error=self.error, error_kind=self.error_kind)
        out["seconds"] = {"decode": round(self.decode_s, 4), "model": round(self.model_s, 4)}
        return out

    def csv_row(self, k: int) -> dict:
        row: dict[str, Any] = {"path": self.path, "ok": int(self.ok), "error": self.error or ""}
        for rank in range(k):
            hit = self.top_k[rank] if rank < len(self.top_k) else {}
            row[f"top{rank + 1}"] = hit.get("name", "")
            row[f"prob{rank + 1}"] = f"{hit['prob']:.6f}" if hit else ""
        return row


def combine_scores(view_logits: torch.Tensor, aggregation: str) -> torch.Tensor:
    """Per-video class probabilities from V x K view logits, as the test aggregates them (summed softmax scores,
    their maximum, or summed logits), normalised so they read as probabilities."""
    logits = view_logits.float()
    if aggregation == "softmax_sum":
        return logits.softmax(-1).mean(0)
    if aggregation == "softmax_max":
        peak = logits.softmax(-1).amax(0)
        return peak / peak.sum()
    if aggregation == "logits_sum":
        return logits.mean(0).softmax(-1)
    raise ConfigError(f"unknown aggregation {aggregation!r}; use one of {', '.join(AGGREGATIONS)}")


def _top(probs: torch.Tensor, k: int, names: Sequence[str]) -> list[dict]:
    values, labels = probs.topk(min(k, probs.numel()))
    return [{"label": int(i), "name": names[int(i)] if int(i) < len(names) else str(int(i)), "prob": float(v)}
            for v, i in zip(values.tolist(), labels.tolist())]


# ------------------------------------------------------------------------------------------------ inputs
def expand_inputs(inputs: Iterable[str | os.PathLike], root: str | os.PathLike | None = None) -> list[str]:
    """Video paths from files, folders (searched recursively for video suffixes) and list files (``.txt``/``.csv``/
    ``.lst``: one path per line, optionally ``path,label``, as in PMV-400's lists; relative paths are taken from
    ``root``, else from the list's folder). A path that does not exist is kept, so it gets an error row instead of
    vanishing."""
    found: list[str] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            videos = sorted(p for p in path.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
            if not videos:
                log.warning("no videos (%s) in %s", ", ".join(VIDEO_SUFFIXES), path)
            found += [str(p) for p in videos]
        elif path.suffix.lower() in LIST_SUFFIXES and path.is_file():
            found += _read_list(path, Path(root) if root else path.parent)
        else:
            found.append(str(path))
    if not found:
        raise PredictError("no videos to predict: pass video files, folders of videos, or a .txt/.csv list of paths")
    return found


def _read_list(path: Path, root: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise PredictError(f"cannot read the list file {path}: {err}") from None
    paths = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        entry = line.split(",")[0].strip()
        if entry.lower() in ("path", "video", "file"):  # a header row
            continue
        entry_path = Path(entry)
        paths.append(str(entry_path if entry_path.is_absolute() else root / entry_path))
    return paths


class _FileDataset(torch.utils.data.Dataset):
    def __init__(self, paths: Sequence[str], decoder: ClipDecoder):
        self.paths, self.decoder = list(paths), decoder

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> DecodedVideo:
        return self.decoder(self.paths[index])


def _identity(batch):
    return batch


# ------------------------------------------------------------------------------------------------ the predictor
def _resolve_device(device: str | torch.device) -> torch.device:
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: no CUDA device is available here; use --device cpu")
    try:
        return torch.device(device)
    except RuntimeError:
        raise ConfigError(f"--device {device!r} is not a device (use auto, cpu, cuda or cuda:N)") from None


def read_class_names_arg(value: str | os.PathLike | Sequence[str] | None) -> Optional[list[str]]:
    """Class names from a list, or a file: ``name,id`` lines (class_name_mapping.csv) or one name per line."""
    if value is None or isinstance(value, (list, tuple)):
        return list(value) if value is not None else None
    from pmv.data.annotations import parse_class_names

    path = Path(value)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read class names from {path}: {err}") from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if lines and all(line.rpartition(",")[2].strip().isdigit() for line in lines):
        return parse_class_names(text, str(path))
    return lines


class Predictor:
    """A model plus its input spec and class names; ``predict(path)`` and ``predict_many(paths)``."""

    def __init__(self, model: nn.Module, spec: InputSpec, class_names: Sequence[str], *, device="cpu",
                 precision: str = "fp32", model_name: str = "", source: str = ""):
        from pmv.engine.precision import resolve_precision

        if precision not in ("fp32", "bf16", "fp16"):
            raise ConfigError(f"--precision {precision!r}: use fp32, bf16 or fp16")
        self.device = _resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.model = model.to(self.device).eval()
        self.spec = spec.checked()
        self.class_names = list(class_names)
        self.model_name = model_name
        self.source = source

    # -- construction
    @classmethod
    def from_checkpoint(cls, checkpoint: str | os.PathLike, *, config_path: str | None = None,
                        overrides: Sequence[str] = (), class_names=None, views: str | None = None,
                        device: str = "auto", precision: str = "fp32", use_ema: bool = False,
                        model_options: dict | None = None) -> "Predictor":
        """A pmv checkpoint (config and class names stored in it), or a PySlowFast/UniFormer file with
        ``config_path`` (the recipe) and ``class_names`` (a file or a list; default: numbers)."""
        from pmv.engine import checkpointing as ckpt
        from pmv.engine.build import build_model, config_for_checkpoint, load_trained_weights

        path = Path(checkpoint)
        if not path.is_file():
            raise CheckpointError(f"checkpoint not found: {path}")
        try:
            state = ckpt.read_checkpoint(path)
        except CheckpointError:
            if not config_path:
                raise CheckpointError(f"{path} is not a pmv checkpoint; for a PySlowFast/UniFormer file pass "
                                      "--config RECIPE.yaml (and --class-names FILE)") from None
            state = None
        config = config_for_checkpoint(state, config_path, overrides)
        model_cfg = replace(config.model, pretrained="",
                            options={**config.model.options, **(model_options or {})})
        spec = InputSpec.from_config(config).with_views(views)
        torch.manual_seed(0)
        model = build_model(model_cfg, spec.input_size)
        load_trained_weights(model, state, path, use_ema=use_ema)
        names = read_class_names_arg(class_names) or (state or {}).get("class_names") or []
        num_classes = model_cfg.num_classes
        if names and len(names) != num_classes:
            raise DataError(f"{len(names)} class names for a model with {num_classes} classes; pass the matching "
                            "--class-names file")
        if not names:
            log.warning("no class names (the checkpoint stores none); using class numbers; pass --class-names")
            names = [str(i) for i in range(num_classes)]
        return cls(model, spec, names, device=device, precision=precision, model_name=model_cfg.name,
                   source=str(path))

    # -- describing
    def describe(self) -> dict:
        return {"name": self.model_name, "checkpoint": self.source, "num_classes": len(self.class_names),
                "input": {"frames": self.spec.num_frames, "height": self.spec.crop[0], "width": self.spec.crop[1],
                          "sampling_rate": self.spec.sampling_rate, "short_side": self.spec.short_side,
                          "mean": list(self.spec.mean), "std": list(self.spec.std)},
                "views": self.spec.views, "aggregation": self.spec.aggregation,
                "device": str(self.device), "precision": self.precision, "classes": self.class_names}

    def decoder(self, views: str | None = None, frame_png_height: int = 0) -> ClipDecoder:
        return ClipDecoder(self.spec.with_views(views), frame_png_height)

    # -- scoring
    @torch.no_grad()
    def view_logits(self, clips: torch.Tensor) -> torch.Tensor:
        """V x K logits of V clips, in chunks of ``spec.batch_size``."""
        from pmv.engine.precision import autocast_context

        parts = []
        for start in range(0, clips.shape[0], self.spec.batch_size):
            chunk = clips[start:start + self.spec.batch_size].to(self.device, non_blocking=True)
            with autocast_context(self.device, self.precision):
                parts.append(self.model(chunk).float().cpu())
        return torch.cat(parts)

    def score(self, decoded: DecodedVideo, *, top_k: int = 5, per_view: bool = False, crops: bool = False,
              aggregation: str | None = None) -> Prediction:
        result = Prediction(path=decoded.path, video=decoded.video, error=decoded.error,
                            error_kind=decoded.error_kind, decode_s=decoded.decode_s, frame_png=decoded.frame_png)
        if decoded.error is not None or decoded.clips is None:
            return result
        aggregation = aggregation or self.spec.aggregation
        started = time.perf_counter()
        logits = self.view_logits(decoded.clips)
        probs = combine_scores(logits, aggregation)
        result.model_s = time.perf_counter() - started
        temporal = max(k for k, _ in decoded.views) + 1
        spatial = sorted({s for _, s in decoded.views})
        result.views = f"{temporal}x{len(spatial)}"
        result.top_k = _top(probs, top_k, self.class_names)
        if per_view:
            view_probs = logits.softmax(-1)
            result.per_view = [{"temporal": k, "spatial": s, "top_k": _top(view_probs[i], top_k, self.class_names)}
                               for i, (k, s) in enumerate(decoded.views)]
        if crops:
            result.crops = []
            for s in spatial:
                rows = [i for i, (_, si) in enumerate(decoded.views) if si == s]
                crop_top = _top(combine_scores(logits[rows], aggregation), 1, self.class_names)[0]
                result.crops.append({**decoded.boxes[s], "top1": crop_top})
        return result

    def predict(self, path: str | os.PathLike, *, top_k: int = 5, views: str | None = None, per_view: bool = False,
                crops: bool = False, frame_png_height: int = 0) -> Prediction:
        """Decode one file (in this process) and score it; a broken file gives a Prediction with ``error``."""
        decoded = self.decoder(views, frame_png_height)(str(path))
        return self.score(decoded, top_k=top_k, per_view=per_view, crops=crops)

    def predict_many(self, paths: Sequence[str], *, top_k: int = 5, views: str | None = None,
                     per_view: bool = False, workers: int = 2, progress: bool = True) -> Iterator[Prediction]:
        """Predictions in input order; decoding in ``workers`` processes (0 = in this one) ahead of the model."""
        from tqdm import tqdm

        dataset = _FileDataset(paths, self.decoder(views))
        workers = max(0, min(int(workers), len(paths)))
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=None, shuffle=False, num_workers=workers, collate_fn=_identity,
            prefetch_factor=2 if workers else None, persistent_workers=False)
        bar = tqdm(total=len(paths), desc="predict", unit="video", disable=not progress or len(paths) < 2,
                   dynamic_ncols=True, leave=False)
        try:
            for decoded in loader:
                yield self.score(decoded, top_k=top_k, per_view=per_view)
                bar.update(1)
        finally:
            bar.close()
