"""Where the team's shared material lies for tests, and a reader for its state-dict listings.

The material sits in ``shared/`` beside the checkout (``../shared`` from the repository root), also in CI;
``PMV_SHARED_DIR`` points elsewhere. Tests that need it skip cleanly when it is absent.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = Path(os.environ.get("PMV_SHARED_DIR") or REPO_ROOT.parent / "shared")
REFERENCE_DIR = SHARED_DIR / "reference"
PMV400_DIR = SHARED_DIR / "pmv400"


def read_listing(name: str) -> dict[str, tuple[int, ...]]:
    """``key: (d0, d1, ...)`` of a reference state-dict listing (``reference/<name>``); skips the test if absent."""
    path = REFERENCE_DIR / name
    if not path.is_file():
        pytest.skip(f"reference listing {path} is not here")
    shapes = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        key, shape = line.split(": ", 1)
        shapes[key] = tuple(int(v) for v in re.findall(r"\d+", shape))
    return shapes
