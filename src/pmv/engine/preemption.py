"""Stopping a run at a step boundary when the cluster asks (SIGTERM, SIGUSR1) or the user presses Ctrl-C.

Schedulers send SIGTERM (or SIGUSR1 with ``--signal``) some time before they take a node. ``StopSignals`` turns
those signals into a flag; the training loop asks ``requested()`` before each step, which agrees across ranks (the
flag is all-reduced), so every rank stops after the same step, writes one checkpoint, and the run exits with
``EXIT_PREEMPTED``. The next run auto-resumes from that checkpoint.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Optional

import torch

from pmv.engine import distributed as distrib
from pmv.errors import PmvError

log = logging.getLogger(__name__)

STOP_SIGNALS = ("SIGTERM", "SIGUSR1")
EXIT_PREEMPTED = 75  # EX_TEMPFAIL: "try again later", what requeueing wrappers look for


class TrainingStopped(PmvError):
    """Training stopped early at a step boundary, after writing a checkpoint to resume from."""

    def __init__(self, message: str, *, checkpoint: Optional[str], signal_name: str, exit_code: int):
        super().__init__(message)
        self.checkpoint = checkpoint
        self.signal_name = signal_name
        self.exit_code = exit_code


class StopSignals:
    """Within ``with StopSignals():`` SIGTERM/SIGUSR1 (and SIGINT, if ``interrupt``) set a flag instead of killing.

    Handlers can only be installed from the main thread; elsewhere the context does nothing.
    """

    def __init__(self, interrupt: bool = True) -> None:
        self.names = list(STOP_SIGNALS) + (["SIGINT"] if interrupt else [])
        self.received: Optional[str] = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: Optional[FrameType]) -> None:
        name = signal.Signals(signum).name
        if self.received is None:
            log.warning("%s received: stopping after the current step and writing a checkpoint", name)
        elif name == "SIGINT":  # a second Ctrl-C: the user wants out now
            raise KeyboardInterrupt
        self.received = self.received or name

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for name in self.names:
                number = getattr(signal, name, None)
                if number is not None:
                    self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()

    def requested(self) -> bool:
        """Whether any rank received a stop signal (a collective call: every rank must ask at the same step)."""
        local = 1.0 if self.received else 0.0
        if not distrib.is_dist():
            return bool(local)
        return bool(distrib.all_reduce_max(torch.tensor([local])).item())
