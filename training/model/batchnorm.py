"""BatchNorm whose running statistics belong to one inference path.

CSK-Net runs its IR stream in two passes per training step: inside the fused
pass, where channel exchange has swapped EO channels in, and in the
exchange-free IR-only pass that is deployed when EO fails. The two passes see
different input distributions. A plain BatchNorm would update its running
statistics from both, and both inference modes would then normalise with
blended statistics that match neither.

`TwoPassBatchNorm2d` is an `nn.BatchNorm2d` (same scale/shift parameters, same
`running_mean/var`, which belong to the single-modality pass) plus a second
pair of running statistics, `fused_running_mean/var`, that is read and
updated instead while the module is inside `fused_pass(...)`. Buffers are not
parameters: the IR-only path's parameter count and MACs are unchanged, and
outside a fused pass the module computes exactly what `nn.BatchNorm2d` does,
so the IR-only graph stays a plain DeepLabV3 (`ir_only_as_deeplabv3`).

Only the IR path uses it. EO has no single-modality pass in training (EO-only
inference is a diagnostic mode), so its BatchNorms keep one set of statistics,
gathered by the fused pass.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn
from torch.nn import functional as F


class TwoPassBatchNorm2d(nn.BatchNorm2d):
    """nn.BatchNorm2d with separate running statistics for the fused pass."""

    def __init__(self, num_features: int):
        super().__init__(num_features)
        self.register_buffer("fused_running_mean", torch.zeros(num_features))
        self.register_buffer("fused_running_var", torch.ones(num_features))
        self.in_fused_pass = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.in_fused_pass:
            return super().forward(x)
        return F.batch_norm(x, self.fused_running_mean, self.fused_running_var, self.weight, self.bias,
                            self.training, self.momentum, self.eps)


@contextmanager
def fused_pass(module: nn.Module):
    """Within the block, every TwoPassBatchNorm2d of `module` uses its fused-pass statistics."""
    bns = [m for m in module.modules() if isinstance(m, TwoPassBatchNorm2d)]
    for bn in bns:
        bn.in_fused_pass = True
    try:
        yield
    finally:
        for bn in bns:
            bn.in_fused_pass = False
