"""Who labels the target pairs, which pixels it may teach, and the loss that carries its labels.

The teacher is a copy of the model taken after AdaBN: CSK-Net's fused pass (EO did not change on
the robot, so the fused prediction suffers less from the new thermal pipeline than the IR-only
pass), or, for a plain IR model, its own IR-only pass (the strongest thing a single-modality model
can do: `ir_baseline_selftrain` in issue 25). Frozen, or an exponential moving average of the
student (mean teacher), so labels improve as the student does.

A pixel teaches where the teacher's max softmax reaches `confidence` (training.losses.
self_distillation_mask, the rule the training objective's self-distillation uses), on night frames
`night_confidence`, and night frames weigh `night_weight`: at night EO carries little and the fused
teacher is mostly the IR stream it is meant to correct.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from .. import losses
from ..data.classes import IGNORE_INDEX


def teacher_mode(model: nn.Module) -> str:
    """The pass that labels: fused where the model has one, else the IR-only pass itself."""
    return "fused" if "fused" in getattr(model, "supported_modes", ()) else "ir_only"


class Teacher:
    """A frozen or EMA copy of the model that predicts in `teacher_mode`."""

    def __init__(self, model: nn.Module, kind: str, ema_decay: float):
        self.net = copy.deepcopy(model).eval()
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.kind, self.decay, self.mode = kind, ema_decay, teacher_mode(model)

    @torch.no_grad()
    def logits(self, eo: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        self.net.eval()
        return self.net(eo=eo, ir=ir, mode=self.mode)["out"]

    @torch.no_grad()
    def follow(self, student: nn.Module) -> None:
        """EMA: teacher <- decay * teacher + (1 - decay) * student; buffers (BN statistics) copied."""
        if self.kind != "ema":
            return
        for t, s in zip(self.net.parameters(), student.parameters()):
            t.mul_(self.decay).add_(s.detach(), alpha=1 - self.decay)
        for t, s in zip(self.net.buffers(), student.buffers()):
            t.copy_(s)


def teaching_mask(teacher_logits: torch.Tensor, night: torch.Tensor, confidence: float,
                  night_confidence: float) -> torch.Tensor:
    """BxHxW bool: pixels confident enough to teach, with the night threshold on night frames."""
    day_keep = losses.self_distillation_mask(teacher_logits, None, confidence, correct_only=False)
    night_keep = losses.self_distillation_mask(teacher_logits, None, night_confidence, correct_only=False)
    return torch.where(night.view(-1, 1, 1), night_keep, day_keep)


def class_balance_weights(labels: torch.Tensor, keep: torch.Tensor, num_classes: int, power: float) -> torch.Tensor:
    """Per-class weights (mean kept pixels per present class / this class's kept pixels) ** power, 0 for an
    absent class. Why: ~95 % of a road scene is background, where the student already agrees with the
    teacher; the classes it gets wrong are a few percent of the pixels and vanish in a plain mean (class-
    balanced self-training, Zou et al., ECCV 2018, balances the pseudo-labels by class for this reason)."""
    counts = torch.bincount(labels[keep], minlength=num_classes).float()
    present = counts > 0
    weights = torch.zeros(num_classes, device=labels.device)
    weights[present] = (counts[present].mean() / counts[present]) ** power
    return weights


def pseudo_label_loss(student: torch.Tensor, teacher_logits: torch.Tensor, keep: torch.Tensor,
                      frame_weight: torch.Tensor, kind: str, temperature: float,
                      class_balance: float = 0.0) -> torch.Tensor:
    """Per-frame CE on the teacher's argmax (or KL to its softened distribution, training.losses.logit_kd)
    over the kept pixels, combined as sum_i w_i n_i L_i / sum_i n_i (n_i kept pixels of frame i): a
    pixel-weighted mean in which a night frame's pixels count `w_i`. With `class_balance` > 0 each pixel
    also weighs the class_balance_weights of its teacher class over the batch. Zero (with a graph)
    when no pixel is kept."""
    counts = keep.flatten(1).sum(1).float()
    if counts.sum() == 0:
        return student.sum() * 0.0
    labels = torch.where(keep, teacher_logits.argmax(1), torch.full_like(keep, IGNORE_INDEX, dtype=torch.long))
    if class_balance > 0:
        classes = class_balance_weights(labels, keep, student.shape[1], class_balance)
        by_class = classes[labels.clamp(max=student.shape[1] - 1)] * keep
        if kind == "ce":
            per_pixel = F.cross_entropy(student, labels, ignore_index=IGNORE_INDEX, reduction="none")
        else:  # training.losses.logit_kd, per pixel
            per_pixel = losses.pixel_kl(student, teacher_logits, temperature) * temperature * temperature
        return (per_pixel * by_class * frame_weight.view(-1, 1, 1)).sum() / by_class.sum()
    total = student.new_zeros(())
    for i in torch.nonzero(counts).flatten().tolist():
        if kind == "ce":
            frame = losses.cross_entropy(student[i:i + 1], labels[i:i + 1])
        else:
            frame = losses.logit_kd(student[i:i + 1], teacher_logits[i:i + 1], None, temperature, keep[i:i + 1])
        total = total + frame_weight[i] * counts[i] * frame
    return total / counts.sum()


def teacher_agreement(student: torch.Tensor, teacher_logits: torch.Tensor, keep: torch.Tensor) -> float:
    """Share of kept pixels where the student already predicts the teacher's class (progress, for the log)."""
    n = keep.sum()
    if n == 0:
        return float("nan")
    same = (student.detach().argmax(1) == teacher_logits.argmax(1)) & keep
    return float(same.sum() / n)

