"""DeepLabV3 decoder pieces: ASPP stream, classifier head, Gated Spectral Unit."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .batchnorm import TwoPassBatchNorm2d


def conv_bn_relu(cin: int, cout: int, kernel: int = 1, dilation: int = 1, two_pass: bool = False) -> nn.Sequential:
    pad = 0 if kernel == 1 else dilation
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, padding=pad, dilation=dilation, bias=False),
        TwoPassBatchNorm2d(cout) if two_pass else nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class ASPPPooling(nn.Module):
    """Image-level branch: global average pool, 1x1 conv, broadcast back."""

    def __init__(self, cin: int, cout: int, two_pass: bool = False):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.proj = conv_bn_relu(cin, cout, two_pass=two_pass)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.pool(x)).expand(-1, -1, x.shape[-2], x.shape[-1])


class ASPPStream(nn.Module):
    """DeepLabV3 head up to (not including) the classifier: ASPP + 3x3 conv.

    Its output is the modality's decoder feature F_eo / F_ir of CSK-Net.
    `two_pass` gives its BatchNorms separate fused-pass statistics (the IR
    stream of CSK-Net, which also runs in the IR-only pass; batchnorm.py).
    """

    def __init__(self, cin: int, channels: int = 256, rates: Sequence[int] = (12, 24, 36), dropout: float = 0.5,
                 two_pass: bool = False):
        super().__init__()
        self.branches = nn.ModuleList(
            [conv_bn_relu(cin, channels, two_pass=two_pass)]
            + [conv_bn_relu(cin, channels, 3, r, two_pass) for r in rates]
            + [ASPPPooling(cin, channels, two_pass)]
        )
        self.project = nn.Sequential(conv_bn_relu(channels * len(self.branches), channels, two_pass=two_pass),
                                     nn.Dropout(dropout))
        self.refine = conv_bn_relu(channels, channels, 3, two_pass=two_pass)
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.refine(self.project(torch.cat([b(x) for b in self.branches], dim=1)))


class GatedSpectralUnit(nn.Module):
    """h = sum over x in {F_eo, F_ir, F_eo + F_ir} of tanh(W_x x) * sigmoid(V_x x).

    Each source gets its own 1x1 W (content) and V (gate), so the unit learns
    per pixel how much of each spectrum, and of their sum, to pass on.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.content = nn.ModuleList(nn.Conv2d(channels, channels, 1) for _ in range(3))
        self.gate = nn.ModuleList(nn.Conv2d(channels, channels, 1) for _ in range(3))

    def forward(self, f_eo: torch.Tensor, f_ir: torch.Tensor) -> torch.Tensor:
        sources = (f_eo, f_ir, f_eo + f_ir)
        return sum(torch.tanh(w(x)) * torch.sigmoid(v(x)) for w, v, x in zip(self.content, self.gate, sources))


def upsample_to(logits: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)
