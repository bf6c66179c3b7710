"""AdaBN (Li et al., 2016): the IR-only path's BatchNorm statistics re-estimated on target thermal frames.

A new thermal pipeline (another sensor, AGC, contrast mapping) shifts the mean and spread of every
IR feature map; the BatchNorms then normalise with the source camera's statistics. Re-estimating
them on the robot's own frames costs one forward pass per frame, needs no labels and changes no
weight. Which BatchNorms: those of the deployed IR-only graph, nothing else:
- CSK-Net: the IR BNs of the shared trunk (`backbone.*.bns.1`) and of the IR ASPP stream (`aspp_ir`).
  With exchange into EO (the default) the fused pass's IR stream IS this path, so the fused pass
  sees the new statistics too; under CEN's symmetric exchange the fused pass keeps its own
  (`fused_running_*`, batchnorm.py), untouched here.
- an IR DeepLabV3 baseline: all of its BatchNorms (it is nothing but an IR-only path).
The EO BNs and the fused head's BN keep the source statistics: the EO camera did not change.

`prior` (Schneider et al., NeurIPS 2020, "covariate shift adaptation") keeps that share of the
source statistics: running = prior * source + (1 - prior) * target. Pure AdaBN (prior 0) fits the new
camera and gives up the old one: measured on MFNet train frames with their own thermal, a CSK-Net's
IR-only mIoU fell by ~20 points after adapting to the MSRS pipeline. A robot that only ever sees
the new camera does not care; one that keeps both does.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..model.csknet import ir_path_batchnorms
from .target import TargetPairs


def batches(n: int, batch_size: int) -> list[np.ndarray]:
    """Consecutive index chunks of near-equal size, none of one frame (train-mode BatchNorm cannot
    normalise the ASPP's pooled 1x1 branch over a single frame)."""
    return np.array_split(np.arange(n), max(1, -(-n // batch_size))) if n >= 2 else [np.arange(n)]


def ir_batch(ir: np.ndarray, device) -> torch.Tensor:
    """N x H x W uint8 thermal -> N x 1 x H x W, the model's camera-range IR input."""
    return torch.from_numpy(np.ascontiguousarray(ir))[:, None].to(device)


def eo_batch(eo: np.ndarray, device) -> torch.Tensor:
    """N x H x W x 3 uint8 RGB -> N x 3 x H x W, the model's camera-range EO input."""
    return torch.from_numpy(np.ascontiguousarray(eo)).permute(0, 3, 1, 2).contiguous().to(device)


def ir_only_logits(model: nn.Module, ir: torch.Tensor) -> torch.Tensor:
    """The deployed fallback's logits, for CSK-Net and the IR baseline alike."""
    return model(ir=ir, mode="ir_only")["out"]


@torch.no_grad()
def reestimate(model: nn.Module, target: TargetPairs, batch_size: int, device, progress=None,
               prior: float = 0.0) -> dict:
    """Reset the IR-only path's running statistics and average them anew over every target frame
    (momentum None: a cumulative mean, every batch counts alike), then keep `prior` of the old ones.
    Weights and every other buffer stay. Leaves the model in eval mode."""
    if not 0.0 <= prior < 1.0:
        raise ValueError(f"--adabn-prior must be in [0, 1), got {prior}")
    bns = ir_path_batchnorms(model)
    momenta = {name: bn.momentum for name, bn in bns.items()}
    source = {name: (bn.running_mean.clone(), bn.running_var.clone()) for name, bn in bns.items()}
    model.eval()
    for bn in bns.values():
        bn.reset_running_stats()
        bn.momentum = None
        bn.train()
    chunks = batches(len(target), batch_size)
    try:
        for index in progress(chunks) if progress else chunks:
            ir_only_logits(model, ir_batch(target.ir[index], device))
    finally:
        for name, bn in bns.items():
            bn.momentum = momenta[name]
        model.eval()
    if prior:
        for name, bn in bns.items():
            bn.running_mean.mul_(1 - prior).add_(source[name][0], alpha=prior)
            bn.running_var.mul_(1 - prior).add_(source[name][1], alpha=prior)
    return {"batchnorms": len(bns), "frames": len(target), "prior": prior}
