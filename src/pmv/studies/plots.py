"""The studies' PNG figures (matplotlib, Agg backend, atomic writes)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np

from pmv.analysis.plots import _pyplot, _save


def plot_probe_heatmaps(panels: Sequence[dict], path: str | os.PathLike, title: str = "") -> Path:
    """One panel per checkpoint: top-1 per crop position (rows = positions along H, top first) drawn over the
    mean test frame. Each panel: ``{"title", "top1": rows x cols, "background": H x W x 3 or None}``."""
    plt = _pyplot()
    cols = len(panels) if len(panels) <= 3 else 3
    rows_of_panels = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows_of_panels, cols, figsize=(4.4 * cols + 1.2, 6.4 * rows_of_panels), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    image = None
    for index, (ax, panel) in enumerate(zip(axes.flat, panels)):
        grid = np.asarray(panel["top1"], dtype=float)
        background = panel.get("background")
        aspect = 1.0
        if background is not None:
            height, width = background.shape[:2]
            aspect = height / width
            ax.imshow(background, extent=(0, 1, 1, 0), aspect=aspect, interpolation="bilinear")
        image = ax.imshow(grid, extent=(0, 1, 1, 0), aspect=aspect, cmap="magma", vmin=0, vmax=100,
                          alpha=0.6 if background is not None else 1.0, interpolation="nearest")
        rows, cols = grid.shape
        for r in range(rows):
            for c in range(cols):
                ax.text((c + 0.5) / cols, (r + 0.5) / rows, f"{grid[r, c]:.0f}", ha="center", va="center",
                        fontsize=6.5, color="white" if grid[r, c] < 60 else "black")
        ax.set_title(panel.get("title", ""), fontsize=10)
        if index // cols == rows_of_panels - 1 or index + cols >= len(panels):
            ax.set_xlabel("crop centre, relative width")
        if index % cols == 0:
            ax.set_ylabel("crop centre, relative height (0 = top)")
        ax.set_xticks([0, 0.5, 1])
        ax.set_yticks([0, 0.25, 0.5, 0.75, 1])
    if image is not None:
        fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.6, label="top-1 (%)")
    if title:
        fig.suptitle(title, fontsize=11)
    return _save(fig, Path(path))


def plot_training_curves(runs: Mapping[str, Sequence[dict]], path: str | os.PathLike, title: str = "") -> Path:
    """Train loss and val top-1 per epoch, one line per run (records of each run's ``metrics.jsonl``)."""
    plt = _pyplot()
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    for i, (name, records) in enumerate(runs.items()):
        colour = f"C{i % 10}"
        epochs = [r for r in records if r.get("kind") == "epoch"]
        vals = [r for r in records if r.get("kind") == "val"]
        if epochs:
            ax_loss.plot([r["epoch"] for r in epochs], [r["train_loss"] for r in epochs], "-", color=colour,
                         label=name)
        if vals:
            ax_acc.plot([r["epoch"] for r in vals], [r["top1"] for r in vals], "o-", color=colour, label=name)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("train loss")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("val top-1 (%)")
    ax_acc.set_ylim(0, 100)
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    return _save(fig, Path(path))


def plot_views(rows: Sequence[dict], path: str | os.PathLike, title: str = "") -> Path:
    """Top-1 against GFLOPs per video, one line per number of spatial crops, points labelled with the number of
    temporal views."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for i, spatial in enumerate(sorted({r["spatial"] for r in rows})):
        points = sorted((r for r in rows if r["spatial"] == spatial), key=lambda r: r["gflops"])
        xs, ys = [r["gflops"] for r in points], [r["top1"] for r in points]
        ax.plot(xs, ys, "o-", color=f"C{i}", label=f"{spatial} spatial crop{'s' if spatial > 1 else ''}")
        for r in points:
            ax.annotate(f"{r['temporal']}x{spatial}", (r["gflops"], r["top1"]), textcoords="offset points",
                        xytext=(4, -10 if i else 5), fontsize=8, color=f"C{i}")
    ax.set_xscale("log")
    ax.set_xlabel("GFLOPs per video (multiply-accumulates, log scale)")
    ax.set_ylabel("top-1 (%)")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    ax.set_title(title or "views: temporal x spatial")
    return _save(fig, Path(path))


def plot_bars(groups: Mapping[str, Mapping[str, Optional[float]]], path: str | os.PathLike, *, title: str = "",
              ylabel: str = "top-1 (%)", chance: Optional[float] = None) -> Path:
    """Grouped bars: ``groups[group][series] = value``; one colour per series, values written on the bars."""
    plt = _pyplot()
    group_names = list(groups)
    series = list(dict.fromkeys(s for g in groups.values() for s in g))
    width = 0.8 / max(len(series), 1)
    fig, ax = plt.subplots(figsize=(max(5.5, 1.1 * len(group_names) * max(1, len(series)) ** 0.5 + 2), 4.2))
    for i, name in enumerate(series):
        xs = np.arange(len(group_names)) + (i - (len(series) - 1) / 2) * width
        values = [groups[g].get(name) for g in group_names]
        heights = [v if v is not None else 0.0 for v in values]
        bars = ax.bar(xs, heights, width * 0.95, color=f"C{i % 10}", label=name)
        for bar, value in zip(bars, values):
            if value is not None:
                ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + 1, f"{value:.0f}", ha="center",
                        va="bottom", fontsize=8)
    if chance is not None:
        ax.axhline(chance, color="grey", linestyle="--", linewidth=1, label=f"chance ({chance:.0f}%)")
    ax.set_xticks(np.arange(len(group_names)))
    ax.set_xticklabels(group_names)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 128)  # room above 100 % for the legend
    ax.set_yticks(range(0, 101, 20))
    ax.grid(alpha=0.3, axis="y")
    if len(series) > 1 or chance is not None:
        ax.legend(fontsize=8, loc="upper center", ncol=len(series) + (chance is not None), frameon=False)
    if title:
        ax.set_title(title)
    return _save(fig, Path(path))


def plot_matrix(matrix: Sequence[Sequence[Optional[float]]], row_names: Sequence[str], col_names: Sequence[str],
                path: str | os.PathLike, *, title: str = "", row_label: str = "", col_label: str = "") -> Path:
    """A small table of top-1 values as a coloured matrix (e.g. train format x test format)."""
    plt = _pyplot()
    values = np.array([[np.nan if v is None else v for v in row] for row in matrix], dtype=float)
    fig, ax = plt.subplots(figsize=(1.6 * len(col_names) + 2.2, 1.3 * len(row_names) + 1.6))
    image = ax.imshow(values, cmap="viridis", vmin=0, vmax=100)
    for r in range(values.shape[0]):
        for c in range(values.shape[1]):
            text = "-" if np.isnan(values[r, c]) else f"{values[r, c]:.1f}%"
            ax.text(c, r, text, ha="center", va="center", fontsize=12,
                    color="white" if np.isnan(values[r, c]) or values[r, c] < 60 else "black")
    ax.set_xticks(range(len(col_names)))
    ax.set_xticklabels(col_names)
    ax.set_yticks(range(len(row_names)))
    ax.set_yticklabels(row_names)
    ax.set_xlabel(col_label)
    ax.set_ylabel(row_label)
    fig.colorbar(image, ax=ax, label="top-1 (%)")
    if title:
        ax.set_title(title, fontsize=10)
    return _save(fig, Path(path))
