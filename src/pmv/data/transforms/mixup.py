"""Batch-level mixup / cutmix with label smoothing (timm's Mixup in "batch" mode, as the seed uses it).

For a batch ``B x C x T x H x W`` and integer labels: with probability ``prob`` the batch is mixed with itself
flipped along the batch (sample i with sample B-1-i); with probability ``switch_prob`` by cutmix (lam ~
Beta(cutmix_alpha), a box of side ``sqrt(1 - lam)`` of the frame centred uniformly, clipped to the frame, the
same box on every frame, and lam corrected to the true box area), else by mixup (lam ~ Beta(alpha), a weighted
sum). Targets: smoothed one-hot (``off = smoothing / K``, ``on = 1 - smoothing + off``) mixed as
``lam * y + (1 - lam) * y.flip(0)``; each row sums to 1.
"""

from __future__ import annotations

import random
from typing import Optional

import torch
import torch.nn.functional as F

from pmv.config.schema import MixupConfig
from pmv.errors import ConfigError

__all__ = ["smooth_one_hot", "mix_targets", "cutmix_box", "Mixup", "soft_target_cross_entropy"]


def smooth_one_hot(labels: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    """``B`` integer labels -> ``B x K`` targets with ``1 - smoothing + smoothing / K`` on the label."""
    off = smoothing / num_classes
    on = 1.0 - smoothing + off
    targets = torch.full((labels.shape[0], num_classes), off, dtype=torch.float32, device=labels.device)
    return targets.scatter_(1, labels.long().view(-1, 1), on)


def mix_targets(labels: torch.Tensor, num_classes: int, lam: float, smoothing: float = 0.0) -> torch.Tensor:
    """Soft targets of a batch mixed with its flip: ``lam * y + (1 - lam) * y.flip(0)``."""
    targets = smooth_one_hot(labels, num_classes, smoothing)
    return targets * lam + targets.flip(0) * (1.0 - lam)


def cutmix_box(height: int, width: int, lam: float, rng: random.Random) -> tuple[int, int, int, int]:
    """``(y_low, y_high, x_low, x_high)`` of a box with sides ``int(dim * sqrt(1 - lam))`` centred at a uniform
    pixel (exclusive upper bound), clipped to the frame."""
    ratio = (1.0 - lam) ** 0.5
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    cy, cx = rng.randrange(height), rng.randrange(width)
    y_low, y_high = min(max(cy - cut_h // 2, 0), height), min(max(cy + cut_h // 2, 0), height)
    x_low, x_high = min(max(cx - cut_w // 2, 0), width), min(max(cx + cut_w // 2, 0), width)
    return y_low, y_high, x_low, x_high


class Mixup:
    """``Mixup(MixupConfig, num_classes)(clips, labels) -> (mixed clips, soft targets)``.

    ``clips``: float ``B x ... x H x W`` (mixed in place); ``labels``: ``B`` ints. Randomness comes from a
    ``random.Random`` (``seed`` or ``rng``), or from the ``rng`` given to a call. ``last_lam`` and
    ``last_used_cutmix`` describe the latest call (e.g. for logging).
    """

    def __init__(self, config: MixupConfig, num_classes: int, seed: Optional[int] = None,
                 rng: Optional[random.Random] = None):  # fmt: skip
        if num_classes <= 0:
            raise ConfigError(f"mixup needs num_classes > 0, got {num_classes}")
        if config.alpha <= 0 and config.cutmix_alpha <= 0:
            raise ConfigError("mixup.alpha and mixup.cutmix_alpha are both <= 0; set one > 0 or mixup.enable=false")
        if not 0.0 <= config.prob <= 1.0 or not 0.0 <= config.switch_prob <= 1.0:
            raise ConfigError("mixup.prob and mixup.switch_prob must lie in [0, 1]")
        if not 0.0 <= config.label_smoothing < 1.0:
            raise ConfigError(f"mixup.label_smoothing must lie in [0, 1), got {config.label_smoothing}")
        self.config = config
        self.num_classes = num_classes
        self.rng = rng if rng is not None else random.Random(seed)
        self.last_lam = 1.0
        self.last_used_cutmix = False

    def sample(self, rng: Optional[random.Random] = None) -> tuple[float, bool]:
        """``(lam, use_cutmix)`` for one batch (lam = 1: no mixing)."""
        rng = rng or self.rng
        cfg = self.config
        if rng.random() >= cfg.prob:
            return 1.0, False
        if cfg.alpha > 0 and cfg.cutmix_alpha > 0:
            use_cutmix = rng.random() < cfg.switch_prob
        else:
            use_cutmix = cfg.cutmix_alpha > 0
        alpha = cfg.cutmix_alpha if use_cutmix else cfg.alpha
        return float(rng.betavariate(alpha, alpha)), use_cutmix

    def __call__(self, clips: torch.Tensor, labels: torch.Tensor,
                 rng: Optional[random.Random] = None) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        rng = rng or self.rng
        lam, use_cutmix = self.sample(rng)
        if lam < 1.0:
            if use_cutmix:
                height, width = clips.shape[-2:]
                y_low, y_high, x_low, x_high = cutmix_box(height, width, lam, rng)
                flipped = clips.flip(0)
                clips[..., y_low:y_high, x_low:x_high] = flipped[..., y_low:y_high, x_low:x_high]
                lam = 1.0 - (y_high - y_low) * (x_high - x_low) / float(height * width)
            else:
                flipped = clips.flip(0).mul_(1.0 - lam)
                clips.mul_(lam).add_(flipped)
        self.last_lam, self.last_used_cutmix = lam, use_cutmix
        targets = mix_targets(labels, self.num_classes, lam, self.config.label_smoothing)
        return clips, targets

    def __repr__(self) -> str:
        return f"Mixup({self.config}, num_classes={self.num_classes})"


def soft_target_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """``sum(-targets * log_softmax(logits))`` per sample, averaged (``mean``), summed or kept (``none``)."""
    loss = torch.sum(-targets * F.log_softmax(logits.float(), dim=-1), dim=-1)
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss
