"""The root of pmv's typed errors.

Every error a user can cause (a bad path, a corrupt video, an unknown config key, a wrong checkpoint) is a
subclass of :class:`PmvError`; its message says what was wrong and what to do. The CLI prints these without a
traceback and exits with status 2.
"""


class PmvError(Exception):
    """Base class of the errors pmv raises for user mistakes and bad input."""


class ConfigError(PmvError, ValueError):
    """A configuration file, key, value or override is invalid."""


class DataError(PmvError):
    """An annotation list, class mapping or dataset layout is invalid."""


class CheckpointError(PmvError):
    """A checkpoint is missing, unreadable, or does not fit the model."""
