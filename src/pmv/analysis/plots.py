"""PNG figures of a run: the training curve (from ``metrics.jsonl``) and the confusion matrix of a test.

Matplotlib runs on the Agg backend, so no display is needed; files are written atomically.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from pmv.utils import atomic_output


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    try:
        with atomic_output(path, ".png") as tmp:
            fig.savefig(tmp, dpi=110, bbox_inches="tight")
    finally:
        fig.clf()
        _pyplot().close(fig)
    return path


def plot_training_curve(records: Sequence[dict], path: str | os.PathLike, title: str = "") -> Path:
    """Train loss and LR per log step, train/val top-1 per epoch, from the records of ``metrics.jsonl``."""
    plt = _pyplot()
    steps = [r for r in records if r.get("kind") == "train"]
    epochs = [r for r in records if r.get("kind") == "epoch"]
    vals = [r for r in records if r.get("kind") == "val"]
    fig, (ax_loss, ax_lr, ax_acc) = plt.subplots(1, 3, figsize=(14, 3.8))
    if steps:
        ax_loss.plot([r["epoch"] for r in steps], [r["loss"] for r in steps], label="train loss", color="C0")
        ax_lr.plot([r["epoch"] for r in steps], [r["lr"] for r in steps], color="C3")
    ax_lr.set_xlabel("epoch")
    ax_lr.set_ylabel("learning rate")
    ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    ax_lr.grid(alpha=0.3)
    if vals:
        ax_loss.plot([r["epoch"] for r in vals], [r["loss"] for r in vals], "o-", color="C1", label="val loss")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_loss.legend(loc="upper right")
    if epochs:
        ax_acc.plot([r["epoch"] for r in epochs], [r["train_top1"] for r in epochs], "o-", label="train top-1")
    if vals:
        ax_acc.plot([r["epoch"] for r in vals], [r["top1"] for r in vals], "s-", label="val top-1")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy (%)")
    ax_acc.set_ylim(0, 101)
    ax_acc.grid(alpha=0.3)
    ax_acc.legend(loc="lower right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, Path(path))


def plot_confusion_matrix(matrix: np.ndarray, class_names: Sequence[str], path: str | os.PathLike,
                          title: str = "") -> Path:
    """Row-normalised confusion matrix (true class down, predicted across); counts written in small matrices."""
    plt = _pyplot()
    matrix = np.asarray(matrix)
    n = matrix.shape[0]
    rows = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, rows, out=np.zeros(matrix.shape, dtype=float), where=rows > 0)
    side = min(4 + 0.45 * n, 40)
    fig, ax = plt.subplots(figsize=(side, side * 0.9))
    image = ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    if n <= 40:
        labels = [str(c)[:28] for c in class_names][:n]
        ax.set_xticks(range(n), labels, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(n), labels, fontsize=8)
        for i in range(n):
            for j in range(n):
                if matrix[i, j]:
                    ax.text(j, i, int(matrix[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if normalised[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title)
    return _save(fig, Path(path))
