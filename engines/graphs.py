"""Deployable graphs: camera uint8 in, class mask + confidence uint8 out.

Pre-processing (cast, layout, normalisation, IR 1->3 channels) and post-
processing (argmax, max-softmax) live inside the graph, so under TensorRT
they run on the GPU and the node does no per-pixel float math in Python.

Inputs:  eo [1, H, W, 3] uint8 RGB (NHWC, as cameras deliver it)
         ir [1, H, W]    uint8 (thermal already scaled to 8 bits)
Outputs: mask [1, H, W] uint8 class ids, confidence [1, H, W] uint8
         (max softmax probability * 255, rounded)
"""

from __future__ import annotations

import torch
from torch import nn

from csk_ros.bundle import GRAPH_INPUTS  # the bundle contract, one definition


def mask_and_confidence(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """argmax -> uint8 mask; max softmax -> uint8 confidence.

    max softmax = 1 / sum(exp(l - max l)), which avoids materialising the
    full probability tensor.
    """
    top, mask = logits.max(dim=1)
    confidence = torch.reciprocal(torch.exp(logits - top.unsqueeze(1)).sum(dim=1))
    confidence = torch.round(confidence * 255.0).clamp(0.0, 255.0)
    # int64 class ids -> float -> uint8: TensorRT 10.3 casts to UINT8 only from FLOAT / HALF
    return mask.float().to(torch.uint8), confidence.to(torch.uint8)


class DeployGraph(nn.Module):
    """Wraps a trained model for one mode with the camera-facing I/O above."""

    def __init__(self, model: nn.Module, mode: str):
        super().__init__()
        if mode not in GRAPH_INPUTS:
            raise ValueError(f"graph mode must be one of {sorted(GRAPH_INPUTS)}, got {mode!r}")
        self.model = model
        self.mode = mode
        self.eval()  # the wrapper too: export must trace inference behaviour (BN stats, no dropout)

    def forward(self, *images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        named = dict(zip(GRAPH_INPUTS[self.mode], images))
        # Cast before any layout op: TensorRT allows uint8 only as a network
        # input/output, never as an intermediate tensor.
        eo = named["eo"].float().permute(0, 3, 1, 2) if "eo" in named else None
        ir = named["ir"].float().unsqueeze(1) if "ir" in named else None
        return mask_and_confidence(self.model.logits(eo, ir, self.mode))
