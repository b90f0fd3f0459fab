"""Spatial transforms of video clips (seed semantics, plain torch). See ``docs/transforms.md``.

``functional`` holds the pure ops; the train/test pipelines used by the dataset are built with
:func:`build_train_transform` and :func:`build_test_transform`.
"""

from pmv.data.transforms.functional import *  # noqa: F401,F403
from pmv.data.transforms.functional import __all__ as _functional_all

__all__ = list(_functional_all)
