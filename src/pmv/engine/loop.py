"""The steps of training, each a small function over two dataclasses.

``TrainState`` holds the counters a checkpoint restores; ``Learner`` holds the objects that learn (model,
optimizer, scaler, EMA, mixup) and how (precision, accumulation, clipping). ``train_one_epoch`` runs optimizer steps
until the epoch ends or a stop is requested; ``train_step`` is one optimizer step over ``grad_accum`` micro-batches.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from pmv.data.audio import mix_easy_negatives
from pmv.data.transforms.mixup import smooth_one_hot, soft_target_cross_entropy
from pmv.engine import distributed as distrib
from pmv.engine.optim import LrSchedule, set_lr
from pmv.engine.precision import autocast_context


@dataclass
class TrainState:
    """Where a run is: what a checkpoint restores besides the weights and optimizer."""

    epoch: int = 0  # completed epochs
    step_in_epoch: int = 0  # optimizer steps done in the current epoch
    global_step: int = 0
    best_top1: Optional[float] = None
    best_loss: float = math.inf

    def improves_on_best(self, metrics: dict) -> bool:
        """Best = highest val top-1; on a tie (small val sets saturate) the lower loss."""
        return self.best_top1 is None or (metrics["top1"], -metrics["loss"]) > (self.best_top1, -self.best_loss)


class ModelEma:
    """An exponential moving average of a model's weights (buffers are copied as they are)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for ema_value, value in zip(self.module.state_dict().values(), model.state_dict().values()):
            if ema_value.dtype.is_floating_point:
                ema_value.mul_(self.decay).add_(value.detach(), alpha=1.0 - self.decay)
            else:
                ema_value.copy_(value)


@dataclass
class Learner:
    """The objects that learn and the settings of one optimizer step."""

    model: nn.Module  # the bare model: weights are saved from here
    forward_model: nn.Module  # the same model, or its DistributedDataParallel wrapper
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    schedule: LrSchedule
    device: torch.device
    precision: str
    num_classes: int
    grad_accum: int = 1
    clip_grad_norm: float = 0.0
    label_smoothing: float = 0.0
    soft_targets: bool = False
    ema: Optional[ModelEma] = None
    mixup: Optional[Callable] = None
    audio_visual: bool = False
    easy_negative_ratio: float = 0.75
    mix_negative_epoch: int = 0

    @property
    def distributed(self) -> bool:
        return self.forward_model is not self.model


@dataclass
class StepStats:
    loss_sum: float = 0.0
    correct: int = 0
    clips: int = 0
    grad_norm: Optional[float] = None

    def add(self, other: "StepStats") -> None:
        self.loss_sum += other.loss_sum
        self.correct += other.correct
        self.clips += other.clips


@dataclass
class EpochResult:
    stats: StepStats = field(default_factory=StepStats)
    stopped: bool = False  # a stop (preemption, Ctrl-C) was requested at a step boundary
    seconds: float = 0.0


def model_inputs(batch: dict, device: torch.device, audio_visual: bool) -> tuple[tuple, torch.Tensor]:
    """The model's positional inputs and the labels of a batch; ``B x N x ...`` repeated augmentation is flattened.

    Audio-visual models get ``(clip, audio)``; ``audio`` is ``N x 1 x T x F`` or, with AV-sync negatives, ``N x 2``.
    """
    clips, labels = batch["clip"], batch["label"]
    repeats = 1
    if clips.ndim == 6:
        repeats = clips.shape[1]
        clips = clips.flatten(0, 1)
        labels = labels.repeat_interleave(repeats)
    inputs: tuple = (clips.to(device, non_blocking=True),)
    if audio_visual:
        audio = batch["audio"]
        if repeats > 1 and audio.shape[0] != clips.shape[0]:
            audio = audio.repeat_interleave(repeats, dim=0)
        inputs = inputs + (audio.to(device, non_blocking=True),)
    return inputs, labels.to(device, non_blocking=True)


def classification_loss(learner: Learner, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    if learner.soft_targets:
        return soft_target_cross_entropy(logits, targets)
    return F.cross_entropy(logits.float(), targets, label_smoothing=learner.label_smoothing)


def auxiliary_loss(model: nn.Module) -> torch.Tensor | float:
    """Losses a model leaves beside its logits (AVSlowFast's AV-sync losses), summed; 0 when there are none."""
    losses = getattr(model, "aux_losses", None)
    return sum(losses.values()) if losses else 0.0


def forward_backward(learner: Learner, batch: dict, epoch: int, sync: bool) -> StepStats:
    """One micro-batch: inputs, mixup or soft targets, autocast forward, losses, scaled backward."""
    inputs, labels = model_inputs(batch, learner.device, learner.audio_visual)
    clips = inputs[0]
    if learner.audio_visual and inputs[1].shape[1] == 2:
        ratio = 1.0 if epoch < learner.mix_negative_epoch else learner.easy_negative_ratio
        inputs = (clips, mix_easy_negatives(inputs[1], ratio))
    if learner.mixup is not None:
        clips, targets = learner.mixup(clips, labels)
        inputs = (clips,) + inputs[1:]
    elif learner.soft_targets:
        targets = smooth_one_hot(labels, learner.num_classes, learner.label_smoothing)
    else:
        targets = labels
    no_sync = learner.distributed and not sync
    with learner.forward_model.no_sync() if no_sync else contextlib.nullcontext():
        with autocast_context(learner.device, learner.precision):
            logits = learner.forward_model(*inputs)
        loss = classification_loss(learner, logits, targets) + auxiliary_loss(learner.model)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {loss.item()} at epoch {epoch + 1}; lower optim.base_lr or set "
                                     "optim.clip_grad_norm")
        learner.scaler.scale(loss / learner.grad_accum).backward()
    dominant = targets.argmax(dim=-1) if targets.ndim == 2 else targets  # mixup: the dominant label
    correct = int((logits.detach().argmax(dim=-1) == dominant).sum().item())
    return StepStats(float(loss.item()) * clips.shape[0], correct, clips.shape[0])


def train_step(learner: Learner, batches: Iterator[dict], epoch_position: float, epoch: int) -> StepStats:
    """One optimizer step: the LR of this point of the schedule, ``grad_accum`` micro-batches, clip, step, EMA."""
    lr = learner.schedule.lr_at(epoch_position)
    set_lr(learner.optimizer, lr)
    learner.optimizer.zero_grad(set_to_none=True)
    stats = StepStats()
    for micro in range(learner.grad_accum):
        stats.add(forward_backward(learner, next(batches), epoch, sync=micro == learner.grad_accum - 1))
    if learner.clip_grad_norm > 0:
        learner.scaler.unscale_(learner.optimizer)
        stats.grad_norm = float(nn.utils.clip_grad_norm_(learner.model.parameters(), learner.clip_grad_norm))
    learner.scaler.step(learner.optimizer)
    learner.scaler.update()
    if learner.ema is not None:
        learner.ema.update(learner.model)
    return stats


@dataclass
class EpochPlan:
    """How one epoch runs: its length, logging, mid-epoch checkpoints, and the hooks the trainer gives it."""

    steps: int
    log_period: int = 10
    checkpoint_steps: int = 0
    world_size: int = 1
    progress: bool = True
    log: Callable[[int, dict], None] = lambda step, record: None  # (global_step, record)
    save: Callable[[], None] = lambda: None  # a mid-epoch checkpoint of the current state
    stop_requested: Callable[[], bool] = lambda: False  # same answer on every rank
    on_step: Optional[Callable[[int], None]] = None


def train_one_epoch(learner: Learner, state: TrainState, batches: Iterator[dict], plan: EpochPlan) -> EpochResult:
    """Optimizer steps from ``state.step_in_epoch`` to the end of epoch ``state.epoch`` (or to a requested stop)."""
    learner.forward_model.train()
    result = EpochResult()
    window, window_start, started = StepStats(), time.perf_counter(), time.perf_counter()
    bar = tqdm(total=plan.steps, initial=state.step_in_epoch, desc=f"epoch {state.epoch + 1}", leave=False,
               disable=not plan.progress, dynamic_ncols=True)
    while state.step_in_epoch < plan.steps:
        if plan.stop_requested():
            result.stopped = True
            break
        position = state.epoch + state.step_in_epoch / plan.steps
        stats = train_step(learner, batches, position, state.epoch)
        state.step_in_epoch += 1
        state.global_step += 1
        window.add(stats)
        result.stats.add(stats)
        bar.update(1)
        if plan.on_step is not None:
            plan.on_step(state.global_step)
        done = state.step_in_epoch
        if done % max(1, plan.log_period) == 0 or done == plan.steps:
            elapsed = max(time.perf_counter() - window_start, 1e-9)
            record = {"epoch": state.epoch + done / plan.steps, "lr": learner.schedule.lr_at(position),
                      "loss": window.loss_sum / max(window.clips, 1),
                      "top1": 100.0 * window.correct / max(window.clips, 1),
                      "clips_per_s": window.clips * plan.world_size / elapsed}
            if stats.grad_norm is not None:
                record["grad_norm"] = stats.grad_norm
            bar.set_postfix(loss=f"{record['loss']:.3f}", lr=f"{record['lr']:.2e}")
            plan.log(state.global_step, record)
            window, window_start = StepStats(), time.perf_counter()
        if plan.checkpoint_steps > 0 and done % plan.checkpoint_steps == 0 and done < plan.steps:
            plan.save()
    bar.close()
    result.seconds = time.perf_counter() - started
    return result


@torch.no_grad()
def recompute_bn_stats(model: nn.Module, batches, num_batches: int, device: torch.device, precision: str,
                       audio_visual: bool = False) -> int:
    """Precise BN: replace BatchNorm running stats by their average over ``num_batches`` train batches.

    Every rank uses its own batches; the statistics are then averaged over ranks. Returns the batches used.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms or num_batches <= 0:
        return 0
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches seen
    was_training = model.training
    model.train()
    used = 0
    for batch in batches:
        if used >= num_batches:
            break
        inputs, _ = model_inputs(batch, device, audio_visual)
        with autocast_context(device, precision):
            model(*inputs)
        used += 1
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    if distrib.is_dist():
        world = torch.distributed.get_world_size()
        for m in norms:
            for buffer in (m.running_mean, m.running_var):
                torch.distributed.all_reduce(buffer)
                buffer.div_(world)
    model.train(was_training)
    return used
