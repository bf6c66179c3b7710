"""CSK-Net training objective, one function per term so each can be weighed
or switched off from the config (a weight of 0 skips the term entirely).

Reconstruction note: the paper names the terms (CE on three heads, knowledge
distillation from an EO teacher into the encoder and EO branch, pixel-level
contrastive learning, sparse BN-scale regularisation) but not every detail;
the exact forms below (MSE feature KD through a 1x1 adapter, temperature-
scaled KL logit KD, supervised cross-modal InfoNCE over sampled pixels, CEN's
half/half L1 on gammas) are our choices.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .data.classes import IGNORE_INDEX
from .model.resnet import EO, IR, ModalResNet


LOSS_DEFAULTS = {
    "ce_fused": 1.0,
    "ce_eo": 0.5,
    "ce_ir": 0.5,
    # CE on the exchange-free IR-only pass: the deployed fallback must be
    # trained as it runs (in the fused pass the IR stream sees exchanged EO
    # channels that are absent at IR-only inference).
    "ce_ir_only": 1.0,
    "kd_feature": 1.0,
    "kd_logit": 0.5,
    "kd_temperature": 2.0,
    "contrastive": 0.1,
    "contrastive_temperature": 0.1,
    "contrastive_samples": 512,
    "contrastive_dim": 64,
    "gamma_l1": 2e-4,
}


def loss_config(overrides: dict | None = None) -> dict:
    cfg = dict(LOSS_DEFAULTS)
    for key, value in (overrides or {}).items():
        if key not in LOSS_DEFAULTS:
            raise ValueError(f"unknown loss config key {key!r}; known: {sorted(LOSS_DEFAULTS)}")
        cfg[key] = value
    return cfg


def cross_entropy(logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, label, ignore_index=IGNORE_INDEX)


def feature_kd(student: torch.Tensor, teacher: torch.Tensor, adapter: nn.Module) -> torch.Tensor:
    """MSE between adapted student features and (frozen) teacher features."""
    student = adapter(student)
    if student.shape[-2:] != teacher.shape[-2:]:
        student = F.interpolate(student, size=teacher.shape[-2:], mode="bilinear", align_corners=False)
    return F.mse_loss(student, teacher.detach())


def logit_kd(student: torch.Tensor, teacher: torch.Tensor, label: torch.Tensor, temperature: float) -> torch.Tensor:
    """Pixel-wise KL(teacher || student) at temperature T, times T^2, over labelled pixels."""
    t = temperature
    log_p_student = F.log_softmax(student / t, dim=1)
    p_teacher = F.softmax(teacher.detach() / t, dim=1)
    kl = (p_teacher * (torch.log(p_teacher.clamp_min(1e-8)) - log_p_student)).sum(dim=1)
    valid = (label != IGNORE_INDEX).float()
    return (kl * valid).sum() / valid.sum().clamp_min(1.0) * t * t


class ProjectionHead(nn.Module):
    """1x1 conv MLP to a unit-norm embedding, shared by both modalities."""

    def __init__(self, channels: int, dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(channels, channels, 1), nn.ReLU(inplace=True), nn.Conv2d(channels, dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(x), dim=1)


def labels_at_feature_centres(label: torch.Tensor, size) -> torch.Tensor:
    """The label of each feature cell, read at the cell's centre pixel.

    Logits are upsampled with align_corners=False, so feature cell i stands
    for input pixels [i*s, (i+1)*s) with its centre at (i + 0.5)*s - 0.5 (s =
    H / h). We read the pixel floor((i + 0.5)*s), the centre (PyTorch's
    "nearest-exact"); `mode="nearest"` reads floor(i*s), the cell's top-left
    corner, 3.5 px off at stride 8, which mislabels thin classes (lane marks,
    curbs) that do not reach the corner.
    """
    return F.interpolate(label[:, None].float(), size=tuple(size), mode="nearest-exact")[:, 0].long()


def cross_modal_infonce(
    z_eo: torch.Tensor, z_ir: torch.Tensor, label: torch.Tensor, samples: int, temperature: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Supervised InfoNCE between modalities at sampled labelled pixels.

    Anchors from one modality; positives are the other modality's sampled
    pixels of the same class (class-aware, across modalities), negatives the
    rest. Symmetric (EO->IR and IR->EO). Returns 0 when too few pixels.
    """
    label = labels_at_feature_centres(label, z_eo.shape[-2:])
    dim = z_eo.shape[1]
    flat_eo = z_eo.permute(0, 2, 3, 1).reshape(-1, dim)
    flat_ir = z_ir.permute(0, 2, 3, 1).reshape(-1, dim)
    flat_label = label.reshape(-1)
    valid = torch.nonzero(flat_label != IGNORE_INDEX).squeeze(1)
    if valid.numel() < 2:
        return z_eo.sum() * 0.0
    pick = valid[torch.randperm(valid.numel(), generator=generator, device="cpu")[:samples].to(valid.device)]
    a, b, y = flat_eo[pick], flat_ir[pick], flat_label[pick]
    positives = (y[:, None] == y[None, :]).float()
    loss = 0.0
    for anchor, other in ((a, b), (b, a)):
        log_prob = F.log_softmax(anchor @ other.t() / temperature, dim=1)
        loss = loss + (-(log_prob * positives).sum(1) / positives.sum(1)).mean()
    return loss / 2


def gamma_l1(backbone: ModalResNet) -> torch.Tensor:
    """CEN sparsity: L1 on the EO gammas of the first half of the channels and
    the IR gammas of the second half, so disjoint halves become exchangeable."""
    total = 0.0
    for bn in backbone.exchange_bns():
        half = bn.bns[EO].weight.numel() // 2
        total = total + bn.bns[EO].weight[:half].abs().sum() + bn.bns[IR].weight[half:].abs().sum()
    return total
