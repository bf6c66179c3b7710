"""Input normalisation inside the model, so training, the ONNX graphs and the
runtime share one definition. Inputs are camera-range values (0..255, uint8
or float)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
# IR: one grey channel; mean/std of ImageNet's grey so pretrained convs see
# inputs on the scale they were trained on.
IR_MEAN = (114.5,)
IR_STD = (57.6,)


class Normalize(nn.Module):
    """(x - mean) / std per channel, then optionally repeat 1 -> 3 channels so
    the single IR channel can run through the shared RGB first conv."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], repeat_to: int | None = None):
        super().__init__()
        if len(mean) != len(std) or any(s <= 0 for s in std):
            raise ValueError(f"normalisation needs matching mean/std with std > 0, got {mean} / {std}")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.repeat_to = repeat_to

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x.float() - self.mean) / self.std
        if self.repeat_to and x.shape[1] != self.repeat_to:
            x = x.expand(-1, self.repeat_to, -1, -1)
        return x
