"""Cross-modal self-training: the teacher's confident pixels on target pairs supervise the IR-only pass.

One step: a batch of target pairs (random crop and flip, the same for EO and IR) -> the teacher
labels it (teacher.py) -> CE or KL on the IR-only pass over the pixels it may teach (and, with
`fused_weight`, on the fused pass) + `source_weight` x CE on a batch of labelled source frames
(source.py) -> AdamW on the trainable parameters, poly decay.

What trains (`trainable`): "ir_path", the parameters only the IR-only path uses (CSK-Net: the IR
BNs' scale and shift in the shared trunk, the IR ASPP stream, the IR head; the IR baseline:
everything but its convolutions), so the EO stream and the shared convolutions stay exactly as
trained; or "all". BatchNorm statistics are frozen during the steps (every BN in eval mode): they
are the target's after AdaBN, and source frames must not pull them back (the CLI re-estimates them
once more on the final weights).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from .. import losses
from ..train import make_optimizer, poly_schedule
from .adabn import eo_batch, ir_batch, ir_only_logits
from .options import AdaptOptions
from .target import TargetPairs
from .teacher import Teacher, pseudo_label_loss, teacher_agreement, teaching_mask


def trainable_parameters(model: nn.Module, which: str) -> dict[str, nn.Parameter]:
    """name -> parameter that self-training updates (see the module docstring)."""
    named = dict(model.named_parameters())
    if which == "all":
        return named
    if hasattr(model, "aspp_ir"):  # CSK-Net
        return {n: p for n, p in named.items() if ".bns.1." in n or n.startswith(("aspp_ir.", "head_ir."))}
    convs = {f"{n}.weight" for n, m in model.backbone.named_modules(prefix="backbone") if isinstance(m, nn.Conv2d)}
    return {n: p for n, p in named.items() if n not in convs}


def freeze_batchnorm_statistics(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


class TargetBatches:
    """Endless random batches of target pairs (a fresh permutation per pass), cropped and flipped alike
    in EO and IR."""

    def __init__(self, target: TargetPairs, batch_size: int, crop: tuple[int, int], seed: int):
        self.target, self.batch_size, self.crop = target, min(batch_size, len(target)), crop
        self.rng = np.random.default_rng(seed)
        self.order: list[int] = []

    def indices(self) -> np.ndarray:
        if len(self.order) < self.batch_size:
            self.order += self.rng.permutation(len(self.target)).tolist()
        picked, self.order = self.order[:self.batch_size], self.order[self.batch_size:]
        return np.array(picked)

    def __next__(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        index = self.indices()
        height, width = self.target.ir.shape[1:]
        ch, cw = self.crop
        eo, ir = [], []
        for i in index:
            y, x = int(self.rng.integers(0, height - ch + 1)), int(self.rng.integers(0, width - cw + 1))
            e, t = self.target.eo[i, y:y + ch, x:x + cw], self.target.ir[i, y:y + ch, x:x + cw]
            if self.rng.random() < 0.5:
                e, t = e[:, ::-1], t[:, ::-1]
            eo.append(e), ir.append(t)
        return index, np.stack(eo), np.stack(ir)


def self_train(model: nn.Module, target: TargetPairs, opts: AdaptOptions, crop: tuple[int, int], device,
               source: Iterator[dict] | None = None, writer=None, quiet: bool = False) -> dict:
    """Run `opts.steps` steps on `model` in place; returns what happened, for the record and the summary."""
    torch.manual_seed(opts.seed)  # dropout
    teacher = Teacher(model, opts.teacher, opts.ema_decay)
    train = trainable_parameters(model, opts.trainable)
    for name, p in model.named_parameters():
        p.requires_grad_(name in train)
    optimizer = make_optimizer(list(train.values()), {"name": "adamw", "lr": opts.lr,
                                                      "weight_decay": opts.weight_decay, "momentum": 0.9})
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, poly_schedule(opts.steps, 0.9))
    batches = TargetBatches(target, opts.batch_size, crop, opts.seed)
    use_fused = opts.fused_weight > 0
    history = {"loss": [], "kept_day": [], "kept_night": [], "agreement": []}
    model.train()
    freeze_batchnorm_statistics(model)
    bar = tqdm(range(opts.steps), desc="self-train", disable=quiet, dynamic_ncols=True)
    for step in bar:
        index, eo_np, ir_np = next(batches)
        eo, ir = eo_batch(eo_np, device), ir_batch(ir_np, device)
        night = torch.from_numpy(target.night[index]).to(device)
        t_logits = teacher.logits(eo, ir)
        keep = teaching_mask(t_logits, night, opts.confidence, opts.night_confidence)
        weight = torch.where(night, torch.tensor(opts.night_weight, device=device), torch.tensor(1.0, device=device))
        student = ir_only_logits(model, ir)
        parts = {"pseudo_ir_only": pseudo_label_loss(student, t_logits, keep, weight, opts.loss, opts.temperature,
                                                     opts.class_balance)}
        if use_fused:
            fused = model(eo=eo, ir=ir, mode="fused")["out"]
            parts["pseudo_fused"] = opts.fused_weight * pseudo_label_loss(fused, t_logits, keep, weight, opts.loss,
                                                                          opts.temperature, opts.class_balance)
        if source is not None and opts.source_weight > 0:
            parts.update(source_terms(model, next(source), opts, use_fused, device))
        loss = sum(parts.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        teacher.follow(model)
        kept = keep.flatten(1).float().mean(1)
        note(history, loss, kept, night, teacher_agreement(student, t_logits, keep))
        if writer is not None and (step + 1) % opts.log_every == 0:
            log_scalars(writer, step + 1, loss, parts, history, scheduler.get_last_lr()[0])
        bar.set_postfix(loss=f"{loss.item():.3f}", kept=f"{kept.mean().item():.2f}", refresh=False)
    bar.close()
    for p in model.parameters():
        p.requires_grad_(True)
    model.eval()
    return summarize_history(history, opts, len(train), teacher.mode)


def source_terms(model: nn.Module, batch: dict, opts: AdaptOptions, use_fused: bool, device) -> dict:
    """CE on labelled source frames: the IR-only pass, and the fused pass where it learns too."""
    ir, label = batch["ir"].to(device), batch["label"].to(device)
    terms = {"source_ir_only": opts.source_weight * losses.cross_entropy(ir_only_logits(model, ir), label)}
    if use_fused:
        fused = model(eo=batch["eo"].to(device), ir=ir, mode="fused")["out"]
        terms["source_fused"] = opts.source_weight * opts.fused_weight * losses.cross_entropy(fused, label)
    return terms


def note(history: dict, loss: torch.Tensor, kept: torch.Tensor, night: torch.Tensor, agreement: float) -> None:
    history["loss"].append(loss.item())
    day = ~night
    if day.any():
        history["kept_day"].append(kept[day].mean().item())
    if night.any():
        history["kept_night"].append(kept[night].mean().item())
    history["agreement"].append(agreement)


def log_scalars(writer, step: int, loss, parts: dict, history: dict, lr: float) -> None:
    writer.add_scalar("adapt/loss", loss.item(), step)
    for k, v in parts.items():
        writer.add_scalar(f"adapt/loss_{k}", v.item(), step)
    for key in ("kept_day", "kept_night", "agreement"):
        if history[key]:
            writer.add_scalar(f"adapt/{key}", history[key][-1], step)
    writer.add_scalar("adapt/lr", lr, step)


def _mean(values: list, part: slice = slice(None)) -> float | None:
    values = [v for v in values[part] if v == v]  # drop NaN (no kept pixel)
    return float(np.mean(values)) if values else None


def summarize_history(history: dict, opts: AdaptOptions, trainable: int, mode: str) -> dict:
    """First and last tenth of the run, and the share of pixels the teacher taught by day and night."""
    tenth = max(1, len(history["loss"]) // 10)
    return {"steps": len(history["loss"]), "teacher": f"{opts.teacher} {mode} pass", "trainable_tensors": trainable,
            "loss_first": _mean(history["loss"], slice(0, tenth)),
            "loss_last": _mean(history["loss"], slice(-tenth, None)),
            "agreement_first": _mean(history["agreement"], slice(0, tenth)),
            "agreement_last": _mean(history["agreement"], slice(-tenth, None)),
            "kept_day": _mean(history["kept_day"]), "kept_night": _mean(history["kept_night"])}
