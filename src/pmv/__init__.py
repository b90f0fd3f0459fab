"""pmv: video recognition on portrait-mode (vertical) short videos."""

__version__ = "0.1.0"

from pmv.errors import PmvError  # noqa: E402

__all__ = ["PmvError", "__version__"]
