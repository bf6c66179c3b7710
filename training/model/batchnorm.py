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


def _add_fused_statistics(bn: nn.Module, num_features: int) -> None:
    """The fused pass's running statistics (same state-dict keys for the plain and the SyncBN variant)."""
    bn.register_buffer("fused_running_mean", torch.zeros(num_features))
    bn.register_buffer("fused_running_var", torch.ones(num_features))
    bn.in_fused_pass = False


class TwoPassBatchNorm2d(nn.BatchNorm2d):
    """nn.BatchNorm2d with separate running statistics for the fused pass."""

    def __init__(self, num_features: int):
        super().__init__(num_features)
        _add_fused_statistics(self, num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.in_fused_pass:
            return super().forward(x)
        return F.batch_norm(x, self.fused_running_mean, self.fused_running_var, self.weight, self.bias,
                            self.training, self.momentum, self.eps)


class TwoPassSyncBatchNorm(nn.SyncBatchNorm):
    """TwoPassBatchNorm2d for SyncBN training (train.sync_bn, CUDA DDP): the same
    buffers and state-dict keys, batch statistics synchronised across processes.
    In a fused pass the fused buffers stand in for the running ones."""

    def __init__(self, num_features: int, process_group=None):
        super().__init__(num_features, process_group=process_group)
        _add_fused_statistics(self, num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.in_fused_pass:
            return super().forward(x)
        own = self.running_mean, self.running_var
        self.running_mean, self.running_var = self.fused_running_mean, self.fused_running_var
        try:
            return super().forward(x)
        finally:
            self.running_mean, self.running_var = own


TWO_PASS = (TwoPassBatchNorm2d, TwoPassSyncBatchNorm)


def convert_sync_batchnorm(module: nn.Module, process_group=None) -> nn.Module:
    """nn.SyncBatchNorm.convert_sync_batchnorm that keeps the two sets of
    statistics of TwoPassBatchNorm2d (torch's would turn it into a plain
    SyncBatchNorm and silently blend the passes again)."""
    if isinstance(module, TwoPassBatchNorm2d):
        converted = TwoPassSyncBatchNorm(module.num_features, process_group)
        converted.load_state_dict(module.state_dict())
        return converted.to(module.weight.device).train(module.training)
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return nn.SyncBatchNorm.convert_sync_batchnorm(module, process_group)
    for name, child in module.named_children():
        module.add_module(name, convert_sync_batchnorm(child, process_group))
    return module


@contextmanager
def fused_pass(module: nn.Module):
    """Within the block, every two-pass BatchNorm of `module` uses its fused-pass statistics."""
    bns = [m for m in module.modules() if isinstance(m, TWO_PASS)]
    for bn in bns:
        bn.in_fused_pass = True
    try:
        yield
    finally:
        for bn in bns:
            bn.in_fused_pass = False
