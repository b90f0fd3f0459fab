"""``pmv train``: :func:`train` reads top to bottom, like torchvision's reference script.

Set-up (process group, data, model, optimizer, schedule), then resume (an explicit checkpoint, or the newest valid
one in ``train.output_dir``), then per epoch: :func:`pmv.engine.loop.train_one_epoch`, precise BN, validation,
checkpoint. A resumed run restores the weights, optimizer, grad scaler, EMA, counters and every rank's RNG states;
item augmentation is keyed by (seed, epoch, video), so it replays exactly with any number of loader workers.

SIGTERM/SIGUSR1 (what clusters send before taking a node) and Ctrl-C stop the run at the next step boundary on every
rank; it writes a checkpoint and raises :class:`pmv.engine.preemption.TrainingStopped`.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import torch.nn as nn

from pmv.config import Config, config_to_dict, save_config
from pmv.data.loader import collate_clips
from pmv.engine import checkpointing as ckpt
from pmv.engine import distributed as distrib
from pmv.engine.build import build_datasets, build_model, make_loader, seed_everything, train_input_size
from pmv.engine.distributed import DistInfo, ShardedSampler
from pmv.engine.evaluator import evaluate, is_audio_visual
from pmv.engine.loop import EpochPlan, EpochResult, Learner, ModelEma, TrainState, recompute_bn_stats, train_one_epoch
from pmv.engine.optim import build_optimizer, build_schedule
from pmv.engine.precision import resolve_precision
from pmv.engine.preemption import EXIT_PREEMPTED, StopSignals, TrainingStopped
from pmv.engine.tracking import RunTracker
from pmv.errors import ConfigError
from pmv.utils import show_progress

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


@contextlib.contextmanager
def deterministic_algorithms(enabled: bool):
    """Deterministic kernels (exact-resume checks) or cuDNN autotuning for the run; the flags are restored after."""
    previous = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark)
    torch.use_deterministic_algorithms(enabled)
    torch.backends.cudnn.benchmark = not enabled
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0])
        torch.backends.cudnn.benchmark = previous[1]


class RunCheckpoints:
    """Writes this run's checkpoints (rank 0 writes; every rank's RNG states are gathered into each)."""

    def __init__(self, out: Path, config: Config, class_names: list[str], info: DistInfo, steps_per_epoch: int):
        self.folder = out / ckpt.CHECKPOINT_DIR
        self.out, self.config, self.class_names, self.info = out, config, class_names, info
        self.steps_per_epoch = steps_per_epoch
        self.last: Optional[Path] = None

    def save(self, learner: Learner, state: TrainState, metrics: dict, is_best: bool = False) -> Optional[Path]:
        rng = distrib.all_gather_objects(ckpt.capture_run_rng(learner.mixup))
        if self.info.is_main:
            body = ckpt.training_checkpoint(learner, state, config=config_to_dict(self.config),
                                            class_names=self.class_names, rng=rng,
                                            steps_per_epoch=self.steps_per_epoch, world_size=self.info.world_size,
                                            metrics=metrics)
            name = ckpt.checkpoint_name(state.epoch, state.step_in_epoch)
            self.last = ckpt.atomic_save(body, self.folder / name)
            if is_best:
                ckpt.atomic_save(body, self.folder / ckpt.BEST_NAME)
            ckpt.prune_checkpoints(self.out, self.config.train.keep_last)
        distrib.barrier()
        return self.last


class MidEpochSave:
    """The loop's ``save`` hook: a checkpoint of the current state, without metrics."""

    def __init__(self, checkpoints: RunCheckpoints, learner: Learner, state: TrainState):
        self.checkpoints, self.learner, self.state = checkpoints, learner, state

    def __call__(self) -> None:
        self.checkpoints.save(self.learner, self.state, {})


def build_learner(config: Config, model: nn.Module, info: DistInfo, num_classes: int, steps_per_epoch: int) -> Learner:
    tc, oc = config.train, config.optim
    precision = resolve_precision(tc.precision, info.device)
    mixup = None
    if config.mixup.enable:
        from pmv.data.transforms import Mixup

        mixup = Mixup(config.mixup, num_classes, seed=tc.seed + 1_000_003 * info.rank)
    forward_model = model
    if info.distributed:
        # AV models leave the audio pathway unused in iterations where DropPathway drops it.
        forward_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[info.local_rank] if info.device.type == "cuda" else None,
            find_unused_parameters=is_audio_visual(model))
    global_batch = tc.batch_size * tc.grad_accum * info.world_size
    return Learner(
        model=model, forward_model=forward_model, optimizer=build_optimizer(model, oc),
        scaler=torch.amp.GradScaler("cuda", enabled=precision == "fp16" and info.device.type == "cuda"),
        schedule=build_schedule(oc, tc.epochs, num_nodes=info.num_nodes, global_batch=global_batch),
        device=info.device, precision=precision, num_classes=num_classes, grad_accum=tc.grad_accum,
        clip_grad_norm=oc.clip_grad_norm, label_smoothing=tc.label_smoothing,
        soft_targets=mixup is not None or tc.loss == "soft_cross_entropy",
        ema=ModelEma(model, tc.ema_decay) if tc.ema_decay > 0 else None, mixup=mixup,
        audio_visual=is_audio_visual(model), easy_negative_ratio=config.data.easy_negative_ratio,
        mix_negative_epoch=config.data.mix_negative_epoch,
    )


def find_resume_checkpoint(resume: str | Path | None, out: Path, auto_resume: bool) -> tuple[Optional[Path], Any]:
    if resume:
        log.info("resuming from %s", resume)
        return Path(resume), ckpt.read_checkpoint(resume)
    if auto_resume:
        found = ckpt.latest_valid_checkpoint(out)
        if found:
            log.info("auto-resuming from %s", found[0])
            return found
    return None, None


def precise_bn(config: Config, learner: Learner, train_set, info: DistInfo, epoch: int) -> None:
    tc = config.train
    sampler = ShardedSampler(len(train_set), rank=info.rank, world_size=info.world_size, shuffle=True,
                             seed=tc.seed + 7919 * (epoch + 1), drop_last=True, item_seeds=True)
    loader = torch.utils.data.DataLoader(train_set, batch_size=tc.batch_size, sampler=sampler,
                                         collate_fn=collate_clips, drop_last=True)
    used = recompute_bn_stats(learner.model, loader, tc.precise_bn_batches, info.device, learner.precision,
                              learner.audio_visual)
    if used:
        log.info("precise BN statistics from %d batches", used)


def stopped_error(signal_name: str, saved: Optional[Path], state: TrainState, steps_per_epoch: int) -> TrainingStopped:
    where = f"epoch {state.epoch + 1}, step {state.step_in_epoch}/{steps_per_epoch}"
    if signal_name == "SIGINT":
        message = (f"interrupted at {where}; checkpoint written: {saved}. Run the same command again to resume "
                   "from it (no finished step is lost)")
        return TrainingStopped(message, checkpoint=str(saved), signal_name=signal_name, exit_code=130)
    message = (f"{signal_name} received: stopped at {where} and wrote {saved}. Run the same command again (or let "
               f"the scheduler requeue it) to resume; exit code {EXIT_PREEMPTED}")
    return TrainingStopped(message, checkpoint=str(saved), signal_name=signal_name, exit_code=EXIT_PREEMPTED)


@dataclass
class TrainLoaders:
    sampler: ShardedSampler
    train: Any
    val: Any
    steps_per_epoch: int


def build_loaders(config: Config, train_set, val_set, info: DistInfo) -> TrainLoaders:
    """The train loader (sharded, keyed augmentation) and the validation loader (one centre view per video)."""
    tc = config.train
    sampler = ShardedSampler(len(train_set), rank=info.rank, world_size=info.world_size, shuffle=True,
                             seed=tc.seed, drop_last=True, item_seeds=True)
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
    return TrainLoaders(sampler, loader, val_loader, steps_per_epoch)


def resume_run(learner: Learner, resume, config: Config, class_names: list[str], info: DistInfo,
               steps_per_epoch: int) -> tuple[TrainState, Optional[dict]]:
    """The state to start from (fresh, or a checkpoint's), and this rank's RNG states to restore once the epoch's
    loader exists."""
    _, saved = find_resume_checkpoint(resume, Path(config.train.output_dir), config.train.auto_resume)
    if saved is None:
        return TrainState(), None
    state = TrainState(**ckpt.restore_training(learner, saved, class_names))
    if state.step_in_epoch >= steps_per_epoch:  # the epoch had in fact finished
        state.epoch, state.step_in_epoch = state.epoch + 1, 0
    rng_states = saved.get("rng") or []
    if len(rng_states) != info.world_size:
        log.warning("checkpoint has RNG states for %d process(es), this run has %d: dropout and mixup will not "
                    "replay exactly", len(rng_states), info.world_size)
        return state, None
    return state, rng_states[info.rank]


@dataclass
class TrainRun:
    """What the epochs of one run share."""

    config: Config
    info: DistInfo
    train_set: Any
    loaders: TrainLoaders
    tracker: RunTracker
    checkpoints: RunCheckpoints
    progress: bool
    on_step: Optional[Callable[[int], None]] = None
    val_history: list[dict] = field(default_factory=list)


def run_epoch(run: TrainRun, learner: Learner, state: TrainState, signals: StopSignals,
              pending_rng: Optional[dict]) -> EpochResult:
    """Train the rest of epoch ``state.epoch``; on a stop signal, checkpoint and raise ``TrainingStopped``."""
    tc = run.config.train
    run.loaders.sampler.set_epoch(state.epoch)
    run.loaders.sampler.start_at(state.step_in_epoch * tc.batch_size * tc.grad_accum)
    batches = iter(run.loaders.train)
    if pending_rng is not None:  # after the loader iterator exists: creating it draws from the RNG
        ckpt.restore_run_rng(pending_rng, learner.mixup)
    plan = EpochPlan(steps=run.loaders.steps_per_epoch, log_period=tc.log_period,
                     checkpoint_steps=tc.checkpoint_steps, world_size=run.info.world_size,
                     progress=run.progress and run.info.is_main, log=run.tracker.log_train,
                     save=MidEpochSave(run.checkpoints, learner, state), stop_requested=signals.requested,
                     on_step=run.on_step)
    result = train_one_epoch(learner, state, batches, plan)
    if result.stopped:
        saved_path = run.checkpoints.save(learner, state, {})
        raise stopped_error(signals.received or "SIGTERM", saved_path, state, run.loaders.steps_per_epoch)
    return result


def end_epoch(run: TrainRun, learner: Learner, state: TrainState, result: EpochResult) -> None:
    """After an epoch: train stats over ranks, precise BN, validation, the best model, the checkpoint."""
    tc = run.config.train
    loss_sum, correct, clips = distrib.all_reduce_sum(
        [result.stats.loss_sum, result.stats.correct, result.stats.clips]).tolist()
    record = {"epoch": state.epoch + 1, "train_loss": loss_sum / max(clips, 1),
              "train_top1": 100.0 * correct / max(clips, 1), "seconds": result.seconds}
    state.epoch, state.step_in_epoch = state.epoch + 1, 0
    is_last = state.epoch == tc.epochs
    do_eval = run.loaders.val is not None and (state.epoch % max(1, tc.eval_period) == 0 or is_last)
    do_save = state.epoch % max(1, tc.checkpoint_period) == 0 or is_last
    if tc.precise_bn and (do_eval or do_save):
        precise_bn(run.config, learner, run.train_set, run.info, state.epoch - 1)
    metrics: dict = {}
    is_best = False
    summary = f"epoch {state.epoch}/{tc.epochs}: train loss {record['train_loss']:.4f} top-1 {record['train_top1']:.2f}%"
    if do_eval:
        eval_model = learner.ema.module if learner.ema is not None else learner.model
        metrics = evaluate(eval_model, run.loaders.val, run.info.device, precision=learner.precision,
                           aggregation=run.config.test.aggregation)
        metrics["epoch"] = state.epoch
        run.val_history.append(metrics)
        run.tracker.log("val", state.global_step, **metrics)
        if state.improves_on_best(metrics):
            state.best_top1, state.best_loss, is_best = metrics["top1"], metrics["loss"], True
        summary += f" | val loss {metrics['loss']:.4f} top-1 {metrics['top1']:.2f}% top-5 {metrics['top5']:.2f}%"
    log.info("%s", summary)
    run.tracker.log("epoch", state.global_step, **record)
    if do_save or is_best:
        run.checkpoints.save(learner, state, metrics, is_best=is_best)


def train(
    config: Config,
    *,
    resume: str | Path | None = None,
    device: str = "auto",
    model: nn.Module | None = None,
    datasets: tuple[Any, Any] | None = None,
    on_step: Callable[[int], None] | None = None,
    progress: bool | None = None,
) -> TrainResult:
    """Train ``config``; returns where the run's files are.

    ``model`` and ``datasets`` (train, val) replace the ones the config describes (tests, notebooks, studies).
    ``on_step(global_step)`` is called after every optimizer step. ``progress``: bars or not (None: when stderr is
    a terminal).
    """
    info = distrib.setup(device)
    tc = config.train
    out = Path(tc.output_dir)

    # Data first: it names the classes the model is built for.
    train_set, val_set = datasets or build_datasets(config.data, config.transform, config.test)
    class_names = list(getattr(train_set, "class_names", []) or [])
    num_classes = getattr(train_set, "num_classes", None) or config.model.num_classes
    if num_classes != config.model.num_classes:
        raise ConfigError(f"the training list has {num_classes} classes but model.num_classes="
                          f"{config.model.num_classes}; set model.num_classes={num_classes}")
    loaders = build_loaders(config, train_set, val_set, info)

    # Identical initial weights on every rank, then a distinct RNG stream per rank.
    seed_everything(tc.seed)
    model = (model or build_model(config.model, train_input_size(config))).to(info.device)
    seed_everything(tc.seed + info.rank)
    learner = build_learner(config, model, info, num_classes, loaders.steps_per_epoch)
    state, pending_rng = resume_run(learner, resume, config, class_names, info, loaders.steps_per_epoch)

    run = TrainRun(config, info, train_set, loaders, RunTracker(out, enabled=info.is_main, tensorboard=tc.tensorboard),
                   RunCheckpoints(out, config, class_names, info, loaders.steps_per_epoch), show_progress(progress),
                   on_step)
    if info.is_main:
        save_config(config, out / "config.yaml")
        log.info("training %s on %d clips/step (%d process(es) x %d x %d accumulation), %d steps/epoch, %d epochs",
                 config.model.name, tc.batch_size * tc.grad_accum * info.world_size, info.world_size,
                 tc.batch_size, tc.grad_accum, loaders.steps_per_epoch, tc.epochs)
    with deterministic_algorithms(tc.deterministic), StopSignals() as signals, run.tracker:
        while state.epoch < tc.epochs:
            result = run_epoch(run, learner, state, signals, pending_rng)
            pending_rng = None
            end_epoch(run, learner, state, result)
        drift = distrib.max_param_difference(model)
        run.tracker.log("final", state.global_step, params_max_rank_diff=drift, best_top1=state.best_top1)
        if drift > 1e-4:
            log.warning("parameters differ across ranks by up to %.3g", drift)

    existing = ckpt.list_checkpoints(out) if info.is_main else []
    best_file = out / ckpt.CHECKPOINT_DIR / ckpt.BEST_NAME
    return TrainResult(output_dir=out, epochs=tc.epochs, global_step=state.global_step, best_metric=state.best_top1,
                       last_checkpoint=run.checkpoints.last or (existing[-1] if existing else None),
                       best_checkpoint=best_file if best_file.exists() else None, val_history=run.val_history)


__all__ = ["TrainResult", "deterministic_algorithms", "train"]
