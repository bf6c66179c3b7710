"""CSK-Net training objective, one function per term so each can be weighed
or switched off from the config (a weight of 0 skips the term entirely).

Reconstruction note: the paper names the terms (CE on three heads, knowledge
distillation from an EO teacher into the encoder and EO branch, pixel-level
contrastive learning, sparse BN-scale regularisation) but not every detail;
the exact forms below (MSE feature KD through a 1x1 adapter, temperature-
scaled KL logit KD, supervised cross-modal InfoNCE over sampled pixels, the
L1 on EO gammas, fused -> IR-only self-distillation) are our choices.
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
    # The IR head learns from one input, the IR-only pass, as it runs when deployed
    # (`ce_ir_only`). `ce_ir` is CE on the fused pass's IR stream and exists only for
    # CEN's symmetric exchange, where that stream carries EO channels; with exchange
    # into EO (the default) it is the IR-only pass itself and ce_ir > 0 is refused.
    "ce_ir": 0.0,
    "ce_ir_only": 1.0,
    "kd_feature": 1.0,  # teacher -> fused pass's EO stream (encoder + decoder features)
    # EO teacher -> the IR-only pass: off. The real-data sweep (docs/results/quality_mfnet.md) found
    # that the day-trained EO teacher, weaker than the plain IR model, cost the fallback 1.5 points;
    # the fallback's teacher is the model's own fused head (self_kd below).
    "kd_feature_ir_only": 0.0,
    "kd_logit": 0.5,  # teacher -> EO head
    "kd_logit_ir_only": 0.0,
    # Self-distillation: the fused head's detached prediction teaches the IR-only pass
    # (KL at self_kd_temperature, times T^2) on pixels where the fused prediction is
    # confident (max softmax >= self_kd_confidence) and, on labelled pixels, correct
    # (self_kd_correct_only). Costs nothing at inference: it only shapes the IR path's weights.
    # Off by default: on the MFNet train hold-out (2 seeds, 1200 steps) it cost the fallback 0.6
    # and the fused head 1.3 points (docs/results/quality_mfnet.md); `with_self_kd` in the study.
    "self_kd": 0.0,
    "self_kd_temperature": 2.0,
    "self_kd_confidence": 0.7,
    "self_kd_correct_only": True,
    "kd_temperature": 2.0,
    # KD only where the teacher's max softmax probability reaches this: dark
    # night frames, where EO carries nothing and the teacher is unsure, distil
    # nothing. 0.7 of 9 classes: a clear majority, well above chance (0.11).
    # Measured with the synthetic demo's day-trained teacher on test pixels:
    # day 84% pass (97.5% of them correct, 90.6% overall), night 69% pass
    # (91.2% correct, 80.5% overall).
    "kd_confidence": 0.7,
    "contrastive": 0.1,
    # IR features of the EO<->IR InfoNCE: "ir_only" (the IR-only pass, the
    # deployed path), "fused" (the fused pass's IR stream) or "both".
    "contrastive_ir": "ir_only",
    "contrastive_temperature": 0.1,
    "contrastive_samples": 512,
    "contrastive_dim": 64,
    # CEN's sparsity on the exchange BNs' gammas (see `gamma_proximal_step`):
    # "loss" adds gamma_l1 * L1 to the loss as CEN does (meaningful with SGD,
    # CEN's optimiser); "proximal" soft-thresholds the gammas after each
    # optimiser step, by gamma_prox_budget spread over the run along the lr
    # schedule (meant for Adam/AdamW); "auto" picks "loss" for optim.name=sgd
    # and "proximal" otherwise. gamma_l1 = 0 switches both off.
    "gamma_l1": 2e-4,
    "gamma_l1_mode": "auto",
    "gamma_prox_budget": 1.5,
}
GAMMA_L1_MODES = ("auto", "loss", "proximal")


def loss_config(overrides: dict | None = None) -> dict:
    cfg = dict(LOSS_DEFAULTS)
    for key, value in (overrides or {}).items():
        if key not in LOSS_DEFAULTS:
            raise ValueError(f"unknown loss config key {key!r}; known: {sorted(LOSS_DEFAULTS)}")
        cfg[key] = value
    if cfg["gamma_l1_mode"] not in GAMMA_L1_MODES:
        raise ValueError(f"loss.gamma_l1_mode must be one of {GAMMA_L1_MODES}, got {cfg['gamma_l1_mode']!r}")
    return cfg


def resolve_gamma_l1_mode(loss_cfg: dict, optimizer_name: str) -> str:
    """"auto" -> "loss" under SGD (CEN's setting), "proximal" under Adam/AdamW."""
    mode = loss_cfg["gamma_l1_mode"]
    if mode == "auto":
        return "loss" if optimizer_name == "sgd" else "proximal"
    return mode


def cross_entropy(logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, label, ignore_index=IGNORE_INDEX)


def self_distillation(student: torch.Tensor, fused: torch.Tensor, label: torch.Tensor, temperature: float,
                      confidence: float, correct_only: bool) -> torch.Tensor:
    """Fused -> IR-only self-distillation: KL(fused || student) at `temperature`
    (times T^2) on the pixels where the detached fused prediction is confident
    (max softmax >= `confidence`) and, where the pixel is labelled and
    `correct_only`, right. No gradient reaches the fused side."""
    return logit_kd(student, fused.detach(), None, temperature,
                    self_distillation_mask(fused, label, confidence, correct_only))


def self_distillation_mask(fused: torch.Tensor, label: torch.Tensor, confidence: float,
                           correct_only: bool) -> torch.Tensor:
    """BxHxW bool: the pixels the fused head teaches (see `self_distillation`)."""
    prob = F.softmax(fused.detach().float(), dim=1)
    conf, pred = prob.max(dim=1)
    keep = conf >= confidence
    if correct_only:
        keep = keep & ((label == IGNORE_INDEX) | (pred == label))
    return keep


def teacher_confidence(teacher_logits: torch.Tensor) -> torch.Tensor:
    """Per-pixel max softmax probability of the (frozen) teacher, BxHxW."""
    return F.softmax(teacher_logits.detach().float(), dim=1).amax(dim=1)


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


def feature_kd(student: torch.Tensor, teacher: torch.Tensor, adapter: nn.Module,
               confident: torch.Tensor | None = None) -> torch.Tensor:
    """MSE between adapted student features and (frozen) teacher features,
    averaged over the feature cells where the teacher is confident (`confident`:
    a BxHxW input-size mask; a cell counts when most of its pixels are)."""
    student = adapter(student)
    if student.shape[-2:] != teacher.shape[-2:]:
        student = F.interpolate(student, size=teacher.shape[-2:], mode="bilinear", align_corners=False)
    per_cell = (student - teacher.detach()).pow(2).mean(dim=1)
    if confident is None:
        return per_cell.mean()
    cells = F.adaptive_avg_pool2d(confident[:, None].float(), teacher.shape[-2:])[:, 0] >= 0.5
    return _masked_mean(per_cell, cells)


def logit_kd(student: torch.Tensor, teacher: torch.Tensor, label: torch.Tensor | None, temperature: float,
             confident: torch.Tensor | None = None) -> torch.Tensor:
    """Pixel-wise KL(teacher || student) at temperature T, times T^2, over
    labelled pixels (every pixel when `label` is None) and, given `confident`,
    only where the teacher is confident."""
    kl = pixel_kl(student, teacher, temperature)
    valid = torch.ones_like(kl, dtype=torch.bool) if label is None else label != IGNORE_INDEX
    if confident is not None:
        valid = valid & confident
    return _masked_mean(kl, valid) * temperature * temperature


def pixel_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """BxHxW KL(teacher || student) of the distributions softened by `temperature` (teacher detached)."""
    log_p_student = F.log_softmax(student / temperature, dim=1)
    p_teacher = F.softmax(teacher.detach() / temperature, dim=1)
    return (p_teacher * (torch.log(p_teacher.clamp_min(1e-8)) - log_p_student)).sum(dim=1)


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


def class_balanced_sample(labels: torch.Tensor, samples: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Indices of up to `samples` labelled entries of the flat `labels`, spread
    evenly over the classes present (round robin in random order): every class
    gets the same number of anchors until it runs out of pixels, and the rest
    of the budget goes to the classes that have more. Uniform sampling would
    follow pixel frequency, so rare thin classes (lane marks, bumps) would
    almost never be anchors or positives."""
    valid = torch.nonzero(labels != IGNORE_INDEX).squeeze(1)
    if valid.numel() == 0:
        return valid
    shuffled = valid[torch.randperm(valid.numel(), generator=generator, device="cpu").to(valid.device)]
    y = labels[shuffled]
    by_class = torch.argsort(y, stable=True)  # grouped by class, random order inside each class
    counts = torch.bincount(y)
    first = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(by_class)
    rank[by_class] = torch.arange(by_class.numel(), device=y.device) - first[y[by_class]]
    return shuffled[torch.argsort(rank, stable=True)[:samples]]  # each class's 1st pixel, then each one's 2nd, ...


def cross_modal_infonce(
    z_eo: torch.Tensor, z_ir: torch.Tensor, label: torch.Tensor, samples: int, temperature: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Supervised InfoNCE between modalities at sampled labelled pixels.

    Pixels are sampled class-balanced (`class_balanced_sample`) at feature-cell
    centres (`labels_at_feature_centres`). Anchors from one modality; positives
    are the other modality's sampled pixels of the same class (class-aware,
    across modalities), negatives the rest. Symmetric (EO->IR and IR->EO).
    Returns 0 when too few pixels.
    """
    label = labels_at_feature_centres(label, z_eo.shape[-2:])
    dim = z_eo.shape[1]
    flat_eo = z_eo.permute(0, 2, 3, 1).reshape(-1, dim)
    flat_ir = z_ir.permute(0, 2, 3, 1).reshape(-1, dim)
    flat_label = label.reshape(-1)
    pick = class_balanced_sample(flat_label, samples, generator)
    if pick.numel() < 2:
        return z_eo.sum() * 0.0
    a, b, y = flat_eo[pick], flat_ir[pick], flat_label[pick]
    positives = (y[:, None] == y[None, :]).float()
    loss = 0.0
    for anchor, other in ((a, b), (b, a)):
        log_prob = F.log_softmax(anchor @ other.t() / temperature, dim=1)
        loss = loss + (-(log_prob * positives).sum(1) / positives.sum(1)).mean()
    return loss / 2


def designated_gammas(backbone: ModalResNet) -> list[torch.Tensor]:
    """The gammas the sparsity step acts on (views into the parameters).

    Exchange into EO (the default): the EO gammas of the first half of each
    exchange BN's channels and no IR gamma at all, so no channel the IR-only
    pass uses can be switched off, and EO keeps half its channels its own.
    CEN's symmetric exchange (`exchange_direction: both`): CEN's split, the EO
    first half and the IR second half, so that disjoint halves become
    exchangeable."""
    out = []
    for bn in backbone.exchange_bns():
        half = bn.bns[EO].weight.numel() // 2
        out.append(bn.bns[EO].weight[:half])
        if backbone.ir_stream_exchanged:
            out.append(bn.bns[IR].weight[half:])
    return out


def gamma_l1(backbone: ModalResNet) -> torch.Tensor:
    """CEN sparsity as a loss term: L1 of the designated gammas."""
    return sum(g.abs().sum() for g in designated_gammas(backbone))


@torch.no_grad()
def gamma_proximal_step(backbone: ModalResNet, shrink: float) -> None:
    """CEN's L1 on the designated gammas as a proximal step outside the optimiser:
    gamma <- sign(gamma) * max(|gamma| - shrink, 0) (soft-thresholding), after
    each optimiser step (shrink schedule below).

    Why not the loss term: CEN adds lambda * L1 (lambda = 2e-4) to the loss and
    trains with SGD, where the L1 subgradient moves a gamma by lr * lambda per
    step against the task gradient's lr * dL/dgamma, so an unneeded gamma goes
    to zero and stays there while |dL/dgamma| < lambda. Under Adam(W) the same
    term is divided by the running RMS of the whole gradient: against task
    gradients of ~1e-2 a 2e-4 bias moves a gamma ~lr * 0.02 per step, and in
    the synthetic config's ~770 steps gammas starting at 1 never get near the
    exchange threshold (2e-2): exchange never fires (tests/offline/test_losses.py
    shows it on a small batch: 0 channels with the loss term, > 10% with this
    step).

    The proximal step applies the penalty in the optimiser's own units instead:
    Adam moves a parameter by at most ~lr per step (lr * m/sqrt(v), the
    gradient's signal-to-noise ratio), so the sparsity step shrinks by a
    multiple of the current lr, and a designated gamma survives only where the
    task's normalised gradient consistently pushes it up harder; a channel the
    task does not need (noisy or absent gradient) drifts to zero and is then
    exchanged. Soft-thresholding keeps zeroed gammas at zero (the task gradient
    alone must lift them back), as the L1 proximal operator does.

    Schedule: the training loop uses shrink_t = budget * lr_t / sum_s(lr_s)
    (loss.gamma_prox_budget, default 1.5): the total distance the step can
    move a gamma over the run is fixed, spread along the lr schedule, so the
    penalty has the same effect at any run length (a fixed per-step rate does
    not: at rate * lr the synthetic 768-step run sums to 1.2 * rate, a 384-step
    one to half that, and gammas starting at 1 never reach the 2e-2 threshold).
    With 1.5 an unneeded gamma starting at 1 (our init; ImageNet's are
    smaller) reaches the threshold after ~2/3 of the lr mass, leaving the rest
    of the run to adapt to the exchanged channels; per step that is 1.2 x lr
    on the synthetic config (768 steps of AdamW at 3e-3, poly 0.9), slightly
    more than Adam's normalised task update can hold up. Measured there (an
    earlier run at 1.0 x lr): the first channels cross the threshold near step
    400 and by step ~560 nearly all designated channels (48% of each
    modality's exchange-BN channels) are exchanged; the task gradient rarely
    holds a designated gamma up. Reconstruction: CEN's code has no such step;
    it is our translation of its SGD L1 to Adam.
    """
    if shrink <= 0:
        return
    for g in designated_gammas(backbone):
        g.copy_(g.sign() * (g.abs() - shrink).clamp_min(0.0))
