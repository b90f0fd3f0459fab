"""The tiny demo model: small, any input size, and able to learn motion direction and vertical position."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pmv.models import create_model
from pmv.models.tiny import coordinate_planes

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


def test_tiny_is_small():
    model = create_model("tiny", num_classes=8, input_size=(16, 128, 96))
    assert sum(p.numel() for p in model.parameters()) < 100_000


@pytest.mark.parametrize("height,width", [(224, 224), (256, 192), (288, 192), (192, 256), (37, 29), (128, 96)])
def test_tiny_forward_backward_any_size(height, width):
    torch.manual_seed(0)
    model = create_model("tiny", num_classes=6).train()
    logits = model(torch.randn(2, 3, 4, height, width))
    assert logits.shape == (2, 6)
    logits.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_coordinate_planes_are_normalised_positions():
    planes = coordinate_planes(torch.zeros(1, 3, 2, 5, 3))
    assert planes.shape == (1, 2, 2, 5, 3)
    assert torch.equal(planes[0, 0, 0, :, 0], torch.linspace(-1, 1, 5))  # y: top -1 ... bottom +1
    assert torch.equal(planes[0, 1, 0, 0, :], torch.linspace(-1, 1, 3))  # x: left -1 ... right +1


def moving_square_clips(n_per_class: int, frames: int = 8, height: int = 48, width: int = 32, seed: int = 0):
    """Four classes on a noisy portrait background: a bright square in the top or bottom third, moving left or
    right. Class = 2 * bottom + rightward. Start columns and exact rows vary per clip."""
    generator = torch.Generator().manual_seed(seed)
    clips, labels = [], []
    size = 6
    for label in range(4):
        bottom, rightward = divmod(label, 2)
        for _ in range(n_per_class):
            clip = 0.1 * torch.randn(3, frames, height, width, generator=generator)
            top_row = int(torch.randint(0, height // 3 - size, (1,), generator=generator))
            if bottom:
                top_row += 2 * height // 3
            start = int(torch.randint(0, width - size - frames * 2, (1,), generator=generator))
            for t in range(frames):
                step = 2 * t if rightward else (frames - 1 - t) * 2
                clip[:, t, top_row : top_row + size, start + step : start + step + size] += 1.0
            clips.append(clip)
            labels.append(label)
    return torch.stack(clips), torch.tensor(labels)


def test_tiny_learns_direction_and_vertical_position():
    """Top/bottom x left/right needs both temporal convs and absolute position; 25 full-batch steps suffice."""
    torch.manual_seed(0)
    size = dict(frames=6, height=36, width=24)
    train_x, train_y = moving_square_clips(6, seed=1, **size)
    test_x, test_y = moving_square_clips(6, seed=2, **size)
    model = create_model("tiny", num_classes=4, input_size=(6, 36, 24))
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    for _ in range(25):
        model.train()
        loss = F.cross_entropy(model(train_x), train_y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(test_x).argmax(1) == test_y).float().mean().item()
    assert accuracy >= 0.9, accuracy


def test_tiny_activation_checkpointing_same_result():
    torch.manual_seed(0)
    plain = create_model("tiny", num_classes=3)
    ckpt = create_model("tiny", num_classes=3, act_checkpoint=True)
    ckpt.load_state_dict(plain.state_dict())
    clip = torch.randn(2, 3, 4, 40, 32)
    a, b = plain(clip), ckpt(clip)
    assert torch.allclose(a, b, atol=1e-6)
    a.sum().backward()
    b.sum().backward()
    assert torch.allclose(plain.stem.conv.weight.grad, ckpt.stem.conv.weight.grad, atol=1e-5)
