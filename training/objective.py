"""The per-step training objective of each stage, as one nn.Module so that
DDP wraps model and auxiliary heads (projection, KD adapters) together and
sees a single forward per step."""

from __future__ import annotations

import torch
from torch import nn

from . import losses

STAGES = ("teacher", "baseline", "csk")


class SupervisedObjective(nn.Module):
    """Cross-entropy on a single-output model (the EO teacher, baselines)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.mode = model.supported_modes[0]

    def forward(self, eo, ir, label, teacher_out=None):
        loss = losses.cross_entropy(self.model.logits(eo, ir, self.mode), label)
        return loss, {"ce": loss.detach()}


class CskObjective(nn.Module):
    """CE on fused/EO/IR heads and the IR-only pass, feature + logit KD from
    the EO teacher, cross-modal pixel InfoNCE, and the L1 gamma term."""

    def __init__(self, model: nn.Module, loss_cfg: dict, teacher_channels: tuple[int, int] | None):
        super().__init__()
        self.model = model
        self.w = loss_cfg
        channels = model.cfg["aspp_channels"]
        if self.w["contrastive"] > 0:
            self.projection = losses.ProjectionHead(channels, loss_cfg["contrastive_dim"])
        if (self.w["kd_feature"] > 0 or self.w["kd_logit"] > 0) and teacher_channels is None:
            raise ValueError("loss.kd_feature / loss.kd_logit > 0 need a teacher checkpoint (teacher.checkpoint); "
                             "set both to 0 to train without distillation")
        if self.w["kd_feature"] > 0:
            enc_t, dec_t = teacher_channels
            self.adapt_enc = nn.Conv2d(model.backbone.out_channels, enc_t, 1)
            self.adapt_dec = nn.Conv2d(channels, dec_t, 1)

    def forward(self, eo, ir, label, teacher_out=None):
        w = self.w
        # The objective, not the model, decides which passes run: the fused pass
        # and, for the deployed fallback, the exchange-free IR-only pass.
        out = self.model(eo, ir, mode="fused")
        ir_out = self.model(ir=ir, mode="ir_only") if w["ce_ir_only"] > 0 else None
        logits = {"fused": out["out"], "eo": out["eo"], "ir": out["ir"], "ir_only": ir_out["out"] if ir_out else None}
        parts = {}
        for head in ("fused", "eo", "ir", "ir_only"):
            if w[f"ce_{head}"] > 0:
                parts[f"ce_{head}"] = w[f"ce_{head}"] * losses.cross_entropy(logits[head], label)
        if w["kd_feature"] > 0 or w["kd_logit"] > 0:
            if teacher_out is None:
                raise ValueError("knowledge distillation is on but no teacher output was given")
            if w["kd_feature"] > 0:
                parts["kd_feature"] = w["kd_feature"] * (
                    losses.feature_kd(out["enc_eo"], teacher_out["enc"], self.adapt_enc)
                    + losses.feature_kd(out["dec_eo"], teacher_out["dec"], self.adapt_dec)
                )
            if w["kd_logit"] > 0:
                parts["kd_logit"] = w["kd_logit"] * losses.logit_kd(
                    out["eo"], teacher_out["out"], label, w["kd_temperature"])
        if w["contrastive"] > 0:
            parts["contrastive"] = w["contrastive"] * losses.cross_modal_infonce(
                self.projection(out["dec_eo"]), self.projection(out["dec_ir"]), label,
                w["contrastive_samples"], w["contrastive_temperature"])
        if w["gamma_l1"] > 0 and self.model.cfg["exchange"]:
            parts["gamma_l1"] = w["gamma_l1"] * losses.gamma_l1(self.model.backbone)
        total = sum(parts.values())
        return total, {k: v.detach() for k, v in parts.items()}
