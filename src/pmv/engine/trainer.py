"""The training loop of ``pmv train``: one function, :func:`train`, readable top to bottom.

Per optimizer step: the LR from the seed's schedule at the fractional epoch, ``grad_accum`` micro-batches
(mixup / repeated augmentation, autocast, scaled backward), gradient clipping, the step, the EMA update. Per epoch:
precise BN statistics, validation, checkpoint. Optional mid-epoch checkpoints every ``train.checkpoint_steps``
steps. A resumed run (``resume=`` or the latest valid checkpoint of ``train.output_dir``) restores the model,
optimizer, grad scaler, EMA, counters, every rank's RNG states and the sampler position, and continues as if it had
never stopped.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from pmv.config import Config, config_to_dict, save_config
from pmv.engine import checkpointing as ckpt
from pmv.engine import distributed as distrib
from pmv.engine.distributed import DistInfo, ShardedSampler
from pmv.engine.build import build_datasets, build_model, make_loader, seed_everything, train_input_size
from pmv.engine.evaluator import validate
from pmv.engine.precision import autocast_context, resolve_precision
from pmv.engine.optim import build_optimizer, build_schedule, set_lr
from pmv.engine.tracking import RunTracker
from pmv.data.transforms.mixup import smooth_one_hot, soft_target_cross_entropy
from pmv.data.loader import collate_clips
from pmv.errors import CheckpointError, ConfigError

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    output_dir: Path
    epochs: int
    global_step: int
    best_metric: Optional[float]
    last_checkpoint: Optional[Path]
    best_checkpoint: Optional[Path]
    val_history: list[dict] = field(default_factory=list)


# ------------------------------------------------------------------------------------------- building blocks


def unpack_clips(batch: dict, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Clips and labels of a batch; repeated augmentation (``B x N x C x T x H x W``) becomes ``B*N`` clips."""
    clips, labels = batch["clip"], batch["label"]
    if clips.ndim == 6:
        repeats = clips.shape[1]
        clips = clips.flatten(0, 1)
        labels = labels.repeat_interleave(repeats)
    return clips.to(device, non_blocking=True), labels.to(device, non_blocking=True)


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


@torch.no_grad()
def recompute_bn_stats(model: nn.Module, batches, num_batches: int, device: torch.device, precision: str) -> int:
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
        clips, _ = unpack_clips(batch, device)
        with autocast_context(device, precision):
            model(clips)
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


def _set_determinism(deterministic: bool) -> None:
    if deterministic:
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    else:
        torch.backends.cudnn.benchmark = True


# ------------------------------------------------------------------------------------------------ the loop


def train(
    config: Config,
    *,
    resume: str | Path | None = None,
    device: str = "auto",
    model: nn.Module | None = None,
    datasets: tuple[Any, Any] | None = None,
    on_step: Callable[[int], None] | None = None,
) -> TrainResult:
    """Train ``config``; returns where the run's files are.

    ``model`` and ``datasets`` (train, val) replace the ones the config describes (used by tests and notebooks).
    ``on_step(global_step)`` is called after every optimizer step.
    """
    info: DistInfo = distrib.setup(device)
    tc, oc = config.train, config.optim
    out = Path(tc.output_dir)
    precision = resolve_precision(tc.precision, info.device)
    _set_determinism(tc.deterministic)
    if tc.grad_accum < 1:
        raise ConfigError("train.grad_accum must be >= 1")
    if tc.loss not in ("cross_entropy", "soft_cross_entropy"):
        raise ConfigError(f"train.loss={tc.loss!r} is not one of cross_entropy, soft_cross_entropy")

    # Data first: it names the classes the model is built for.
    train_set, val_set = datasets if datasets is not None else build_datasets(config.data, config.transform, config.test)
    class_names = list(getattr(train_set, "class_names", []) or [])
    num_classes = getattr(train_set, "num_classes", None) or config.model.num_classes
    if num_classes != config.model.num_classes:
        raise ConfigError(f"the training list has {num_classes} classes but model.num_classes="
                          f"{config.model.num_classes}; set model.num_classes={num_classes}")

    seed_everything(tc.seed)  # identical initial weights on every rank
    if model is None:
        model = build_model(config.model, train_input_size(config))
    model.to(info.device)
    seed_everything(tc.seed + info.rank)  # then a distinct augmentation stream per rank

    optimizer = build_optimizer(model, oc)
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16" and info.device.type == "cuda")
    ema = ModelEma(model, tc.ema_decay) if tc.ema_decay > 0 else None
    mixup = None
    if config.mixup.enable:
        from pmv.data.transforms import Mixup

        mixup = Mixup(config.mixup, num_classes, seed=tc.seed + 1_000_003 * info.rank)
    soft_targets = mixup is not None or tc.loss == "soft_cross_entropy"

    sampler = ShardedSampler(len(train_set), rank=info.rank, world_size=info.world_size, shuffle=True,
                             seed=tc.seed, drop_last=True)
    loader = make_loader(train_set, batch_size=tc.batch_size, sampler=sampler, num_workers=tc.num_workers,
                         seed=tc.seed, drop_last=True)
    steps_per_epoch = len(sampler) // tc.batch_size // tc.grad_accum
    if steps_per_epoch < 1:
        raise ConfigError(f"the training split ({len(train_set)} videos over {info.world_size} process(es)) is "
                          f"smaller than one step of train.batch_size={tc.batch_size} x grad_accum={tc.grad_accum}")
    val_loader = None
    if val_set is not None and len(val_set) > 0:
        val_sampler = ShardedSampler(len(val_set), rank=info.rank, world_size=info.world_size, shuffle=False,
                                     drop_last=False)
        val_loader = make_loader(val_set, batch_size=config.test.batch_size, sampler=val_sampler,
                                 num_workers=tc.num_workers, seed=tc.seed, drop_last=False)
    global_batch = tc.batch_size * tc.grad_accum * info.world_size
    schedule = build_schedule(oc, tc.epochs, num_nodes=info.num_nodes, global_batch=global_batch)

    # Resume: an explicit checkpoint, else the newest valid one in the output folder.
    start_epoch, start_step, global_step, best_metric, best_loss, pending_rng = 0, 0, 0, None, math.inf, None
    state = None
    if resume:
        state = ckpt.read_checkpoint(resume)
        log.info("resuming from %s", resume)
    elif tc.auto_resume:
        found = ckpt.latest_valid_checkpoint(out)
        if found:
            log.info("auto-resuming from %s", found[0])
            state = found[1]
    if state is not None:
        if class_names and state.get("class_names") and list(state["class_names"]) != class_names:
            raise CheckpointError("the checkpoint was trained on other classes than this data's class names; "
                                  "point train.output_dir at a new folder or fix data.list_dir")
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as err:
            raise CheckpointError(f"the checkpoint to resume does not fit this model/optimizer ({str(err)[:300]}); "
                                  "resume with the config it was trained with, or use a new train.output_dir") from None
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        if ema is not None and state.get("ema"):
            ema.module.load_state_dict(state["ema"])
        start_epoch, start_step = int(state["epoch"]), int(state["step_in_epoch"])
        global_step, best_metric = int(state["global_step"]), state.get("best_metric")
        best_loss = float(state.get("best_loss", math.inf))
        rng_states = state.get("rng") or []
        if len(rng_states) == info.world_size:
            pending_rng = rng_states[info.rank]
        else:
            log.warning("checkpoint has RNG states for %d process(es), this run has %d: augmentation will not "
                        "replay exactly", len(rng_states), info.world_size)
        if start_step >= steps_per_epoch:  # the epoch had in fact finished
            start_epoch, start_step = start_epoch + 1, 0

    ddp_model: nn.Module = model
    if info.distributed:
        ddp_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[info.local_rank] if info.device.type == "cuda" else None)

    def capture_run_rng() -> dict:
        """The process RNGs plus the streams that live elsewhere: the dataset's generator (in-process
        loading) and mixup's."""
        state = ckpt.capture_rng_state()
        generator = getattr(train_set, "generator", None)
        if tc.num_workers == 0 and isinstance(generator, torch.Generator):
            state["dataset"] = generator.get_state()
        if mixup is not None:
            version, internal, gauss = mixup.rng.getstate()
            state["mixup"] = [version, list(internal), gauss]
        return state

    def restore_run_rng(state: dict) -> None:
        ckpt.restore_rng_state(state)
        if "dataset" in state and isinstance(getattr(train_set, "generator", None), torch.Generator):
            train_set.generator.set_state(state["dataset"])
        if "mixup" in state and mixup is not None:
            version, internal, gauss = state["mixup"]
            mixup.rng.setstate((version, tuple(internal), gauss))

    tracker = RunTracker(out, enabled=info.is_main, tensorboard=tc.tensorboard)
    if info.is_main:
        save_config(config, out / "config.yaml")
        log.info("training %s on %d clips/step (%d process(es) x %d x %d accumulation), %d steps/epoch, %d epochs",
                 config.model.name, global_batch, info.world_size, tc.batch_size, tc.grad_accum, steps_per_epoch,
                 tc.epochs)

    last_path: Optional[Path] = None
    best_path: Optional[Path] = None
    val_history: list[dict] = []

    def save_checkpoint(epoch: int, step_in_epoch: int, metrics: dict, is_best: bool) -> None:
        nonlocal last_path, best_path
        rng = distrib.all_gather_objects(capture_run_rng())  # every rank's, saved by rank 0
        if info.is_main:
            state = {
                "format": ckpt.FORMAT, "version": ckpt.VERSION,
                "model": model.state_dict(), "config": config_to_dict(config), "class_names": class_names,
                "epoch": epoch, "step_in_epoch": step_in_epoch, "global_step": global_step,
                "steps_per_epoch": steps_per_epoch, "world_size": info.world_size,
                "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict() if scaler.is_enabled() else None,
                "ema": ema.module.state_dict() if ema is not None else None,
                "rng": rng, "best_metric": best_metric, "best_loss": best_loss, "metrics": metrics,
            }
            last_path = ckpt.atomic_save(state, out / ckpt.CHECKPOINT_DIR / ckpt.checkpoint_name(epoch, step_in_epoch))
            if is_best:
                best_path = ckpt.atomic_save(state, out / ckpt.CHECKPOINT_DIR / ckpt.BEST_NAME)
            ckpt.prune_checkpoints(out, tc.keep_last)
        distrib.barrier()

    try:
        for epoch in range(start_epoch, tc.epochs):
            sampler.set_epoch(epoch)
            first_step = start_step if epoch == start_epoch else 0
            sampler.start_at(first_step * tc.batch_size * tc.grad_accum)
            batches = iter(loader)
            if pending_rng is not None:  # after the loader iterator exists: creating it draws from the RNG
                restore_run_rng(pending_rng)
                pending_rng = None
            ddp_model.train()
            totals = torch.zeros(3, dtype=torch.float64)  # loss sum, correct, clips
            window_loss, window_correct, window_clips, window_start = 0.0, 0, 0, time.perf_counter()
            epoch_start = time.perf_counter()
            bar = tqdm(total=steps_per_epoch, initial=first_step, desc=f"epoch {epoch + 1}/{tc.epochs}",
                       disable=not info.is_main, dynamic_ncols=True, leave=False)
            for step in range(first_step, steps_per_epoch):
                lr = schedule.lr_at(epoch + step / steps_per_epoch)
                set_lr(optimizer, lr)
                optimizer.zero_grad(set_to_none=True)
                for micro in range(tc.grad_accum):
                    clips, labels = unpack_clips(next(batches), info.device)
                    if mixup is not None:
                        clips, targets = mixup(clips, labels)
                    elif soft_targets:
                        targets = smooth_one_hot(labels, num_classes, tc.label_smoothing)
                    else:
                        targets = labels
                    last_micro = micro == tc.grad_accum - 1
                    sync = contextlib.nullcontext() if last_micro or not info.distributed else ddp_model.no_sync()
                    with sync:
                        with autocast_context(info.device, precision):
                            logits = ddp_model(clips)
                        if soft_targets:
                            loss = soft_target_cross_entropy(logits, targets)
                        else:
                            loss = F.cross_entropy(logits.float(), targets, label_smoothing=tc.label_smoothing)
                        if not torch.isfinite(loss):
                            raise FloatingPointError(f"loss is {loss.item()} at epoch {epoch + 1} step {step}; "
                                                     "lower optim.base_lr or enable optim.clip_grad_norm")
                        scaler.scale(loss / tc.grad_accum).backward()
                    dominant = targets.argmax(dim=-1) if targets.ndim == 2 else targets  # mixup: dominant label
                    correct = int((logits.detach().argmax(dim=-1) == dominant).sum().item())
                    window_loss += float(loss.item()) * clips.shape[0]
                    window_correct += correct
                    window_clips += clips.shape[0]
                    totals += torch.tensor([float(loss.item()) * clips.shape[0], correct, clips.shape[0]],
                                           dtype=torch.float64)
                grad_norm = None
                if oc.clip_grad_norm > 0:
                    scaler.unscale_(optimizer)
                    grad_norm = float(nn.utils.clip_grad_norm_(model.parameters(), oc.clip_grad_norm))
                scaler.step(optimizer)
                scaler.update()
                if ema is not None:
                    ema.update(model)
                global_step += 1
                if on_step is not None:
                    on_step(global_step)
                bar.update(1)

                done = step + 1
                if done % max(1, tc.log_period) == 0 or done == steps_per_epoch:
                    elapsed = max(time.perf_counter() - window_start, 1e-9)
                    record = {
                        "epoch": epoch + done / steps_per_epoch, "lr": lr,
                        "loss": window_loss / max(window_clips, 1),
                        "top1": 100.0 * window_correct / max(window_clips, 1),
                        "clips_per_s": window_clips * info.world_size / elapsed,
                    }
                    if grad_norm is not None:
                        record["grad_norm"] = grad_norm
                    bar.set_postfix(loss=f"{record['loss']:.3f}", lr=f"{lr:.2e}",
                                    clips_s=f"{record['clips_per_s']:.1f}")
                    tracker.log("train", global_step, **record)
                    window_loss, window_correct, window_clips, window_start = 0.0, 0, 0, time.perf_counter()
                if tc.checkpoint_steps > 0 and done % tc.checkpoint_steps == 0 and done < steps_per_epoch:
                    save_checkpoint(epoch, done, {}, is_best=False)
            bar.close()

            # End of epoch: all-reduced train stats, precise BN, validation, checkpoint.
            loss_sum, correct_sum, clip_sum = distrib.all_reduce_sum(totals).tolist()
            epoch_record = {"epoch": epoch + 1, "train_loss": loss_sum / max(clip_sum, 1),
                            "train_top1": 100.0 * correct_sum / max(clip_sum, 1),
                            "seconds": time.perf_counter() - epoch_start}
            is_last = epoch + 1 == tc.epochs
            do_eval = val_loader is not None and ((epoch + 1) % max(1, tc.eval_period) == 0 or is_last)
            do_ckpt = (epoch + 1) % max(1, tc.checkpoint_period) == 0 or is_last
            if tc.precise_bn and (do_eval or do_ckpt):
                bn_sampler = ShardedSampler(len(train_set), rank=info.rank, world_size=info.world_size,
                                            shuffle=True, seed=tc.seed + 7919 * (epoch + 1), drop_last=True)
                # A plain loader: build_loader would re-seed the dataset's augmentation stream.
                bn_loader = torch.utils.data.DataLoader(train_set, batch_size=tc.batch_size, sampler=bn_sampler,
                                                        collate_fn=collate_clips, drop_last=True)
                used = recompute_bn_stats(model, bn_loader, tc.precise_bn_batches, info.device, precision)
                if used:
                    log.info("precise BN statistics from %d batches", used)
            metrics: dict = {}
            is_best = False
            if do_eval:
                eval_model = ema.module if ema is not None else model
                metrics = validate(eval_model, val_loader, info.device, precision=precision)
                metrics["epoch"] = epoch + 1
                val_history.append(metrics)
                tracker.log("val", global_step, **metrics)
                # Best = highest top-1; on a tie (small val sets saturate) the lower loss.
                if best_metric is None or (metrics["top1"], -metrics["loss"]) > (best_metric, -best_loss):
                    best_metric, best_loss, is_best = metrics["top1"], metrics["loss"], True
                log.info("epoch %d/%d: train loss %.4f top-1 %.2f%% | val loss %.4f top-1 %.2f%% top-5 %.2f%%",
                         epoch + 1, tc.epochs, epoch_record["train_loss"], epoch_record["train_top1"],
                         metrics["loss"], metrics["top1"], metrics["top5"])
            else:
                log.info("epoch %d/%d: train loss %.4f top-1 %.2f%%", epoch + 1, tc.epochs,
                         epoch_record["train_loss"], epoch_record["train_top1"])
            tracker.log("epoch", global_step, **epoch_record)
            if do_ckpt or is_best:
                save_checkpoint(epoch + 1, 0, metrics, is_best=is_best)
        drift = distrib.max_param_difference(model)
        tracker.log("final", global_step, params_max_rank_diff=drift, best_top1=best_metric)
        if drift > 1e-4:
            log.warning("parameters differ across ranks by up to %.3g", drift)
    finally:
        tracker.close()
    if last_path is None and info.is_main:
        existing = ckpt.list_checkpoints(out)
        last_path = existing[-1] if existing else None
    best_file = out / ckpt.CHECKPOINT_DIR / ckpt.BEST_NAME
    return TrainResult(output_dir=out, epochs=tc.epochs, global_step=global_step, best_metric=best_metric,
                       last_checkpoint=last_path, best_checkpoint=best_file if best_file.exists() else best_path,
                       val_history=val_history)


__all__ = ["TrainResult", "recompute_bn_stats", "train", "ModelEma", "unpack_clips"]
