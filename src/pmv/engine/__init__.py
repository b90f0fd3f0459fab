"""Training and evaluation: config to objects, the training loop, the multi-view test, checkpoints, torchrun.

``train(config)`` trains (and resumes) a run; ``evaluate_checkpoint(path)`` is ``pmv test``; ``run_test`` and
``run_view_sweep`` score a model already in memory. The pieces of the loop (``TrainState``, ``Learner``,
``train_one_epoch``, ``train_step``) are public for notebooks and studies.
"""

from pmv.engine.build import build_datasets, build_model, load_weights, make_loader, seed_everything
from pmv.engine.evaluator import (
    ProtocolResult,
    TestReport,
    evaluate,
    evaluate_checkpoint,
    load_checkpoint_for_test,
    run_test,
    run_view_sweep,
)
from pmv.engine.loop import Learner, ModelEma, TrainState, train_one_epoch, train_step
from pmv.engine.preemption import EXIT_PREEMPTED, StopSignals, TrainingStopped
from pmv.engine.trainer import TrainResult, train

__all__ = [
    "EXIT_PREEMPTED",
    "Learner",
    "ModelEma",
    "ProtocolResult",
    "StopSignals",
    "TestReport",
    "TrainResult",
    "TrainState",
    "TrainingStopped",
    "build_datasets",
    "build_model",
    "evaluate",
    "evaluate_checkpoint",
    "load_checkpoint_for_test",
    "load_weights",
    "make_loader",
    "run_test",
    "run_view_sweep",
    "seed_everything",
    "train",
    "train_one_epoch",
    "train_step",
]
