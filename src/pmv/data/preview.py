"""A picture of what the data pipeline feeds the model: sampled clips after augmentation, de-normalised.

One row per sampled clip: the clip's first decoded frame at full view (scaled to the row height, so the crop can be
compared with the whole portrait frame), then a few frames of the clip as the model sees them. The class name
and video file are written above each row.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

import torch
from PIL import Image, ImageDraw

from pmv.data.dataset import ClipDataset
from pmv.video.reader import VideoReader
from pmv.utils import atomic_output

LABEL_HEIGHT = 14
GAP = 4


def to_images(clip: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> list[Image.Image]:
    """A normalised ``C x T x H x W`` clip -> one RGB image per frame."""
    mean_t = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1, 1)
    pixels = ((clip.float() * std_t + mean_t) * 255.0).clamp(0, 255).round().to(torch.uint8)
    return [Image.fromarray(frame.numpy()) for frame in pixels.permute(1, 2, 3, 0)]


def _full_frame(path: str, height: int) -> Optional[Image.Image]:
    try:
        with VideoReader(path, threads=1) as reader:
            frame = reader.get_frames_at([reader.num_frames // 2])[0]
    except Exception:  # noqa: BLE001 - the preview still shows the clip
        return None
    image = Image.fromarray(frame.numpy())
    width = max(1, round(image.width * height / image.height))
    return image.resize((width, height), Image.BILINEAR)


def render_preview(
    dataset: ClipDataset, num: int = 8, frames_per_clip: int = 4, seed: int = 0, show_full_frame: bool = True
) -> Image.Image:
    """Draw ``num`` items of ``dataset`` (picked with ``seed``) as a grid image."""
    num = max(1, min(num, len(dataset)))
    picker = torch.Generator().manual_seed(seed)
    picks = torch.randperm(len(dataset), generator=picker)[:num].tolist()
    dataset.generator = torch.Generator().manual_seed(seed + 1)
    rows = []
    for index in picks:
        item = dataset[index]
        clip = item["clip"]
        if clip.dim() == 5:  # repeated augmentation: show the first copy
            clip = clip[0]
        frames = to_images(clip, dataset.data.mean, dataset.data.std)
        step = max(1, len(frames) // frames_per_clip)
        chosen = frames[::step][:frames_per_clip]
        video = item["index"]
        full = _full_frame(dataset.paths[video], chosen[0].height) if show_full_frame else None
        title = f"{dataset.class_names[item['label']]}  |  {os.path.basename(dataset.paths[video])}"
        if item.get("valid") is False:
            title += "  (could not decode)"
        rows.append((title, full, chosen))
    # a wider gap sets the full frame apart from the clip's frames
    widths = [
        (full.width + 3 * GAP if full else 0) + sum(image.width + GAP for image in chosen) for _, full, chosen in rows
    ]
    row_height = max(image.height for _, full, chosen in rows for image in ([full] if full else []) + chosen)
    width = max(widths) + GAP
    height = len(rows) * (row_height + LABEL_HEIGHT + GAP) + GAP
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    y = GAP
    for title, full, chosen in rows:
        draw.text((GAP, y), title, fill=(0, 0, 0))
        x = GAP
        if full:
            canvas.paste(full, (x, y + LABEL_HEIGHT))
            x += full.width + 3 * GAP
        for image in chosen:
            canvas.paste(image, (x, y + LABEL_HEIGHT))
            x += image.width + GAP
        y += row_height + LABEL_HEIGHT + GAP
    return canvas


def save_preview(image: Image.Image, path: str | os.PathLike) -> Path:
    """Write a PNG atomically."""
    path = Path(path)
    with atomic_output(path, ".png") as tmp:
        image.save(tmp, format="PNG")
    return path
