"""Classification heads. All pool adaptively, so a model built for one crop runs at any other.

PySlowFast pools with a fixed ``AvgPool3d`` sized from the training crop and, in eval, applies softmax at every
remaining position and averages. With an adaptive pool there is exactly one position, so the heads here return
plain logits in train and eval (the evaluator applies softmax), and a model trained at 256x192 tests at 224x224.
Attribute names (``conv_5``, ``lin_5``, ``projection``) are PySlowFast's, for checkpoint compatibility.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from pmv.models.layers import batch_norm3d


class X3DHead(nn.Module):
    """conv_5 (1x1x1) -> BN -> ReLU -> global average -> lin_5 (1x1x1, no bias) -> ReLU -> dropout -> projection."""

    def __init__(self, dim_in: int, dim_inner: int, dim_out: int, num_classes: int, dropout: float = 0.5):
        super().__init__()
        self.conv_5 = nn.Conv3d(dim_in, dim_inner, kernel_size=1, bias=False)
        self.conv_5_bn = batch_norm3d(dim_inner)
        self.lin_5 = nn.Conv3d(dim_inner, dim_out, kernel_size=1, bias=False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.projection = nn.Linear(dim_out, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv_5_bn(self.conv_5(x)))
        x = F.adaptive_avg_pool3d(x, 1)
        x = F.relu(self.lin_5(x)).flatten(1)
        return self.projection(self.dropout(x))


class ResNetBasicHead(nn.Module):
    """Per-pathway global average, concatenation, dropout, one linear ``projection`` (ResNet/SlowFast/AVSlowFast)."""

    def __init__(self, dims_in: Sequence[int], num_classes: int, dropout: float = 0.5):
        super().__init__()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.projection = nn.Linear(int(sum(dims_in)), num_classes)

    def forward(self, pathways: Sequence[torch.Tensor]) -> torch.Tensor:
        pooled = [p.mean(dim=(2, 3, 4)) for p in pathways]
        return self.projection(self.dropout(torch.cat(pooled, dim=1)))


class LinearHead(nn.Module):
    """Dropout and a linear layer over already-pooled features (``N x C``)."""

    def __init__(self, dim_in: int, num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.projection = nn.Linear(dim_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection(self.dropout(x))
