"""The per-step training objective of each stage, as one nn.Module so that
DDP wraps model and auxiliary heads (projection, KD adapters) together and
sees a single forward per step."""

from __future__ import annotations

from torch import nn

from . import losses

STAGES = ("teacher", "baseline", "csk")
KD_TERMS = ("kd_feature", "kd_feature_ir_only", "kd_logit", "kd_logit_ir_only")
CONTRASTIVE_IR = ("ir_only", "fused", "both")


class SupervisedObjective(nn.Module):
    """Cross-entropy on a single-output model (the EO teacher, baselines)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.mode = model.supported_modes[0]

    def forward(self, eo, ir, label, teacher_out=None, eo_dropped=None):
        loss = losses.cross_entropy(self.model.logits(eo, ir, self.mode), label)
        return loss, {"ce": loss.detach()}


class CskObjective(nn.Module):
    """CSK-Net's training objective.

    Passes (the objective, not the model, decides which run): the fused pass
    (both modalities, exchange) and the IR-only pass, the deployed fallback.
    With exchange into EO only (the default, resnet.py) the fused pass's IR
    stream IS the IR-only pass (`model.ir_stream_is_ir_only`), so one pass
    serves both and a step costs a fused forward only; with CEN's symmetric
    exchange a second, exchange-free IR-only pass runs whenever a term needs it.

    Terms (loss config, a weight of 0 switches a term off):
    - CE on the fused and EO heads of the fused pass and on the IR-only pass
      (`ce_ir_only`): the IR head learns from that one input. `ce_ir` (the fused
      pass's IR stream) exists only under symmetric exchange.
    - Feature KD (MSE through 1x1 adapters) from the EO teacher's encoder and
      decoder features into the fused pass's EO stream (`kd_feature`), logit KD
      (KL at temperature T) into the EO head (`kd_logit`); into the IR-only pass
      (`kd_*_ir_only`) only if a recorded sweep chooses it (off by default).
    - Every KD term is gated per pixel by the teacher's confidence (max softmax
      >= `kd_confidence`) and masked on frames whose EO was dropped by the
      augmentation (`eo_dropped`): there the teacher saw nothing.
    - Self-distillation (`self_kd`): the fused head's detached prediction into
      the IR-only head, on confident (and, where labelled, correct) pixels.
    - Cross-modal pixel InfoNCE between the fused pass's EO decoder features
      and the IR decoder features of the IR-only pass (`contrastive_ir`:
      "ir_only", the fused pass's IR stream "fused", or "both"; the same
      features unless the exchange is symmetric).
    - CEN's L1 on the designated gammas when `gamma_l1_mode` is "loss" (with
      "proximal" the training loop applies it after the optimiser step).
    Reconstruction: the paper names CE, teacher KD, contrastive learning and
    the sparsity; the confidence gates and the self-distillation are ours.
    """

    def __init__(self, model: nn.Module, loss_cfg: dict, teacher_channels: tuple[int, int] | None):
        super().__init__()
        self.model = model
        self.w = w = loss_cfg
        channels = model.aspp_channels
        if w["contrastive"] > 0:
            if w["contrastive_ir"] not in CONTRASTIVE_IR:
                raise ValueError(f"loss.contrastive_ir must be one of {CONTRASTIVE_IR}, got {w['contrastive_ir']!r}")
            self.projection = losses.ProjectionHead(channels, w["contrastive_dim"])
        if w["ce_ir"] > 0 and model.ir_stream_is_ir_only:
            raise ValueError("loss.ce_ir > 0 trains the fused pass's IR stream, which with "
                             "model.exchange_direction=into_eo (or no exchange) is the IR-only pass: "
                             "use loss.ce_ir_only, or set loss.ce_ir=0")
        if any(w[k] > 0 for k in KD_TERMS) and teacher_channels is None:
            raise ValueError(f"loss.{'/'.join(KD_TERMS)} > 0 need a teacher checkpoint (teacher.checkpoint); "
                             "set them to 0 to train without distillation")
        if w["kd_feature"] > 0:
            enc_t, dec_t = teacher_channels
            self.adapt_enc = nn.Conv2d(model.backbone.out_channels, enc_t, 1)
            self.adapt_dec = nn.Conv2d(channels, dec_t, 1)
        if w["kd_feature_ir_only"] > 0:
            enc_t, dec_t = teacher_channels
            self.adapt_enc_ir = nn.Conv2d(model.backbone.out_channels, enc_t, 1)
            self.adapt_dec_ir = nn.Conv2d(channels, dec_t, 1)

    def needs_ir_only_pass(self) -> bool:
        """Whether any term reads the IR-only pass."""
        w = self.w
        return (w["ce_ir_only"] > 0 or w["kd_feature_ir_only"] > 0 or w["kd_logit_ir_only"] > 0 or w["self_kd"] > 0
                or (w["contrastive"] > 0 and w["contrastive_ir"] != "fused"))

    def ir_only_pass(self, out: dict, ir):
        """The IR-only pass's outputs: the fused pass's IR stream where that is the
        same computation, else a second, exchange-free pass."""
        if not self.needs_ir_only_pass():
            return None
        if self.model.ir_stream_is_ir_only:
            return {"out": out["ir"], "enc_ir": out["enc_ir"], "dec_ir": out["dec_ir"]}
        return self.model(ir=ir, mode="ir_only")

    def forward(self, eo, ir, label, teacher_out=None, eo_dropped=None):
        w = self.w
        out = self.model(eo, ir, mode="fused")
        ir_out = self.ir_only_pass(out, ir)
        logits = {"fused": out["out"], "eo": out["eo"], "ir": out["ir"], "ir_only": ir_out["out"] if ir_out else None}
        parts = {}
        for head in ("fused", "eo", "ir", "ir_only"):
            if w[f"ce_{head}"] > 0:
                parts[f"ce_{head}"] = w[f"ce_{head}"] * losses.cross_entropy(logits[head], label)
        if any(w[k] > 0 for k in KD_TERMS):
            if teacher_out is None:
                raise ValueError("knowledge distillation is on but no teacher output was given")
            confident = losses.teacher_confidence(teacher_out["out"]) >= w["kd_confidence"]
            if eo_dropped is not None:  # the teacher saw a black or dying frame: nothing to teach
                confident = confident & ~eo_dropped.to(confident.device).bool().view(-1, 1, 1)
            if w["kd_feature"] > 0:  # into the fused pass's EO stream
                parts["kd_feature"] = w["kd_feature"] * (
                    losses.feature_kd(out["enc_eo"], teacher_out["enc"], self.adapt_enc, confident)
                    + losses.feature_kd(out["dec_eo"], teacher_out["dec"], self.adapt_dec, confident))
            if w["kd_feature_ir_only"] > 0:  # into the IR-only pass, the deployed fallback
                parts["kd_feature_ir_only"] = w["kd_feature_ir_only"] * (
                    losses.feature_kd(ir_out["enc_ir"], teacher_out["enc"], self.adapt_enc_ir, confident)
                    + losses.feature_kd(ir_out["dec_ir"], teacher_out["dec"], self.adapt_dec_ir, confident))
            for key, student in (("kd_logit", logits["eo"]), ("kd_logit_ir_only", logits["ir_only"])):
                if w[key] > 0:
                    parts[key] = w[key] * losses.logit_kd(student, teacher_out["out"], label, w["kd_temperature"],
                                                          confident)
        if w["self_kd"] > 0:
            parts["self_kd"] = w["self_kd"] * losses.self_distillation(
                logits["ir_only"], logits["fused"], label, w["self_kd_temperature"], w["self_kd_confidence"],
                w["self_kd_correct_only"])
        if w["contrastive"] > 0:
            z_eo = self.projection(out["dec_eo"])
            sources = ([out["dec_ir"]] if w["contrastive_ir"] in ("fused", "both") else []) + (
                [ir_out["dec_ir"]] if w["contrastive_ir"] in ("ir_only", "both") else [])
            parts["contrastive"] = w["contrastive"] * sum(
                losses.cross_modal_infonce(z_eo, self.projection(f_ir), label, w["contrastive_samples"],
                                           w["contrastive_temperature"]) for f_ir in sources) / len(sources)
        if w["gamma_l1"] > 0 and w["gamma_l1_mode"] == "loss" and self.model.exchange:
            parts["gamma_l1"] = w["gamma_l1"] * losses.gamma_l1(self.model.backbone)
        total = sum(parts.values())
        return total, {k: v.detach() for k, v in parts.items()}
