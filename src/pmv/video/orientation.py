"""How to turn a coded picture upright, exactly as FFmpeg's autorotate does (ffmpeg, ffplay).

A video's display matrix (mp4/mov ``tkhd``, Matroska projection, or frame side data) maps coded to display
coordinates. FFmpeg reads its rotation angle ``theta`` and then inserts, for the nearest multiple of 90 degrees:

* 0:   ``vflip`` when matrix[4] < 0;
* 90:  ``transpose=cclock_flip`` (a plain transpose) when matrix[3] > 0, else ``transpose=clock``;
* 180: ``hflip`` when matrix[0] < 0 and ``vflip`` when matrix[4] < 0 (both: a half turn);
* 270: ``transpose=clock_flip`` (the anti-transpose) when matrix[3] < 0, else ``transpose=cclock``.

pmv writes each of these eight results as ``rotation`` (degrees counter-clockwise, 0/90/180/270) followed by a
left-right mirror when ``mirrored``. Angles that are not near a multiple of 90 degrees (FFmpeg's free
``rotate`` filter) are not applied; they are logged.
"""

from __future__ import annotations

import logging
import math
from typing import Sequence

import numpy as np

logger = logging.getLogger(__name__)


def display_angle(matrix: Sequence[int]) -> float | None:
    """FFmpeg's ``get_rotation``: the display matrix's angle in degrees, in [0, 360); None if degenerate."""
    a, b, c, d = (float(matrix[i]) for i in (0, 1, 3, 4))
    scale_x, scale_y = math.hypot(a, c), math.hypot(b, d)
    if scale_x == 0 or scale_y == 0:
        return None
    theta = float(round(math.degrees(math.atan2(b / scale_y, a / scale_x))))
    return theta - 360 * math.floor(theta / 360 + 0.9 / 360)


def orientation_from_matrix(matrix: Sequence[int] | None) -> tuple[int, bool]:
    """(rotation, mirrored) that reproduce FFmpeg's autorotate for this display matrix.

    ``rotation``: degrees counter-clockwise to turn the coded picture; then, when ``mirrored``, flip it left to
    right. No matrix (or an identity one) gives (0, False).
    """
    if matrix is None or len(matrix) < 9:
        return 0, False
    theta = display_angle(matrix)
    if theta is None:
        return 0, False
    m0, m3, m4 = matrix[0], matrix[3], matrix[4]
    if abs(theta - 90) < 1:
        return (270, True) if m3 > 0 else (270, False)
    if abs(theta - 180) < 1:
        hflip, vflip = m0 < 0, m4 < 0
        if hflip and vflip:
            return 180, False
        if hflip:
            return 0, True
        return (180, True) if vflip else (0, False)
    if abs(theta - 270) < 1:
        return (90, True) if m3 < 0 else (90, False)
    if abs(theta) < 1 or abs(theta - 360) < 1:
        return (180, True) if m4 < 0 else (0, False)
    logger.warning("display matrix turns the picture by %.0f degrees, not a multiple of 90; not applied", theta)
    return 0, False


def matrix_from_bytes(data) -> tuple[int, ...] | None:
    """The nine int32 values of FFmpeg's DISPLAYMATRIX side data (native byte order)."""
    raw = bytes(data)
    if len(raw) < 36:
        return None
    return tuple(int(v) for v in np.frombuffer(raw[:36], dtype=np.int32))


def frame_orientation(frame) -> tuple[int, bool]:
    """(rotation, mirrored) of a decoded PyAV frame, from its display-matrix side data."""
    try:
        data = frame.side_data.get("DISPLAYMATRIX")
    except (KeyError, ValueError, AttributeError):
        data = None
    return orientation_from_matrix(matrix_from_bytes(data) if data is not None else None)


def is_transposed(rotation: int) -> bool:
    """Whether the upright picture has width and height swapped relative to the coded one."""
    return rotation % 180 == 90


def apply_orientation(picture: np.ndarray, rotation: int, mirrored: bool) -> np.ndarray:
    """``picture`` (H x W x ...) turned ``rotation`` degrees counter-clockwise, then mirrored left to right."""
    turns = (rotation // 90) % 4
    if turns:
        picture = np.rot90(picture, k=turns)
    if mirrored:
        picture = picture[:, ::-1]
    return picture
