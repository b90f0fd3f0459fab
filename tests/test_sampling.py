import pytest
import torch

from pmv.data import sampling
from pmv.errors import DataError


def starts(clips):
    return [clip.indices[0] for clip in clips]


def test_offset_rule_places_first_and_last_clip_at_the_ends():
    # 300 frames, clip 16 x 4 = 64: delta = 236; floor(236 / 2) = 118
    clips = sampling.test_clips(300, 16, 4, fps=30, num_views=3)
    assert starts(clips) == [0, 118, 236]
    assert clips[0].indices == list(range(0, 64, 4))
    assert clips[-1].indices[-1] == 296
    five = sampling.test_clips(300, 16, 4, fps=30, num_views=5)
    assert starts(five) == [0, 59, 118, 177, 236]


def test_single_view_is_the_centre_and_no_offset_rule():
    assert sampling.test_clip(300, 16, 4, 30, view=0, num_views=1).indices[0] == 118
    assert sampling.test_clip(301, 16, 4, 30, view=0, num_views=1).indices[0] == 118  # floor(237 / 2)
    # without offset sampling, view k starts at delta * k / K
    assert starts(sampling.test_clips(300, 16, 4, 30, 4, offset_sampling=False)) == [0, 59, 118, 177]
    assert starts(sampling.test_clips(301, 16, 4, 30, 2, offset_sampling=False)) == [0, 118]


def test_short_video_clamps_to_last_frame():
    clip = sampling.test_clip(40, 16, 4, 30, view=0, num_views=1)
    assert clip.indices == [0, 4, 8, 12, 16, 20, 24, 28, 32, 36] + [39] * 6
    assert all(c.indices == clip.indices for c in sampling.test_clips(40, 16, 4, 30, 3))
    one = sampling.train_clip(1, 8, 2, 30, generator=torch.Generator().manual_seed(0))
    assert one.indices == [0] * 8


def test_target_fps_maps_stride_to_native_frames():
    # stride 4 at 30 fps on a 60 fps file = every 8th native frame; clip covers 128 native frames
    clip = sampling.test_clip(600, 16, 4, fps=60, view=0, num_views=3, target_fps=30)
    assert clip.indices == list(range(0, 128, 8))
    # 25 fps file: frames at 0, 10/3, 20/3, ... native positions, rounded down
    low = sampling.test_clip(300, 4, 4, fps=25, view=0, num_views=2, target_fps=30)
    assert low.indices == [0, 3, 6, 10]
    assert sampling.clip_length(16, 4, fps=25, target_fps=30) == pytest.approx(16 * 4 * 25 / 30)
    # same rate: identical to native sampling
    assert sampling.test_clips(300, 8, 2, 30, 3, target_fps=30) == sampling.test_clips(300, 8, 2, 30, 3)


def test_clip_time_span_for_audio():
    clip = sampling.test_clip(300, 16, 4, fps=30, view=1, num_views=3)
    assert clip.start_s == pytest.approx(118 / 30)
    assert clip.end_s == pytest.approx((118 + 64) / 30)
    short = sampling.test_clip(40, 16, 4, fps=20, view=0, num_views=1)
    assert (short.start_s, short.end_s) == (0.0, pytest.approx(2.0))


def test_train_clip_is_random_inside_the_video_and_seeded():
    def draw(seed):
        generator = torch.Generator().manual_seed(seed)
        return [sampling.train_clip(100, 8, 2, 30, generator=generator).indices[0] for _ in range(200)]

    first = draw(1)
    assert first == draw(1)
    assert first != draw(2)
    assert min(first) == 0 and max(first) == 100 - 16  # delta = 84, inclusive
    clip = sampling.train_clip(100, 8, 2, 30, generator=torch.Generator().manual_seed(3))
    assert clip.indices == list(range(clip.indices[0], clip.indices[0] + 16, 2))


def test_bad_inputs():
    with pytest.raises(DataError, match="0 frames"):
        sampling.test_clip(0, 8, 2, 30, 0, 1)
    with pytest.raises(DataError, match="outside"):
        sampling.test_clip(100, 8, 2, 30, 3, 3)
    with pytest.raises(DataError, match="frame rate"):
        sampling.test_clip(100, 8, 2, 0, 0, 1, target_fps=30)
