"""The paper's six studies as functions (``pmv study NAME``): format, spatial-bias, augmentation, views, temporal,
audio. Each writes ``<out>/<name>/results.json``, ``report.md`` and PNG figures; see ``docs/studies.md``.

Studies call the engine (``pmv.engine.trainer.train``, ``pmv.engine.evaluator.run_test``) for every training and
every test, so they run wherever the engine runs (one CPU to ``torchrun`` GPUs); only rank 0 writes their files.
Study-specific test variants (frame orders, the 16x9 probe crops) are dataset wrappers in
:mod:`pmv.studies.datasets`, so the scoring stays the engine's.
"""

STUDIES = ("format", "spatial-bias", "augmentation", "views", "temporal", "audio")

__all__ = ["STUDIES"]
