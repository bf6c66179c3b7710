"""What a user without labels can see of an adaptation: label-free signals on the target pairs.

- agreement_day: share of pixels where the IR-only prediction equals the fused prediction, on day
  pairs (where EO is informative, the fused pass is the better-informed opinion). CSK-Net only;
  night agreement is reported too, but there the fused pass leans on IR itself. On road scenes
  ~95% of pixels are background, so this share hardly moves: `fused_miou_day`, the mIoU (MFNet
  protocol) of the IR-only prediction scored against the fused one as if it were the label, weighs
  every class alike and is the one to watch.
- confidence_ir_only / confidence_fused: mean max-softmax. A rise with a falling agreement is a
  warning sign (confidently wrong), not progress.
- class shares of the IR-only (and fused) prediction: a class that collapses to ~0 or a share that
  runs away means self-training reinforced a bias. `share_gap` is the L1 distance between the
  IR-only and fused class shares over all pairs.
How far these tracked the labelled mIoU is the study's question (issue 25, item 4); docs/adaptation.md
holds what was measured.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..metrics import confusion_matrix, iou_per_class, mean_iou
from .adabn import batches, eo_batch, ir_batch, ir_only_logits
from .target import TargetPairs, evenly


class _Tally:
    """Running sums of one pass over the pairs."""

    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.pixels = {"ir_only": np.zeros(num_classes), "fused": np.zeros(num_classes)}
        self.confidence = {"ir_only": 0.0, "fused": 0.0}
        self.agree = {"day": [0, 0], "night": [0, 0]}  # [equal pixels, pixels]
        self.cm = {key: torch.zeros(num_classes, num_classes, dtype=torch.int64) for key in ("day", "night")}

    def add(self, mode: str, logits: torch.Tensor) -> torch.Tensor:
        prob = torch.softmax(logits.float(), dim=1)
        conf, pred = prob.max(1)
        self.confidence[mode] += float(conf.sum())
        self.pixels[mode] += np.bincount(pred.flatten().cpu().numpy(), minlength=self.num_classes)
        return pred

    def compare(self, ir_pred: torch.Tensor, fused_pred: torch.Tensor, night: np.ndarray) -> None:
        equal = (ir_pred == fused_pred).flatten(1).sum(1).cpu().numpy()
        per_frame = ir_pred[0].numel()
        for is_night, key in ((False, "day"), (True, "night")):
            rows = night == is_night
            self.agree[key][0] += int(equal[rows].sum())
            self.agree[key][1] += int(rows.sum()) * per_frame
            if rows.any():  # rows: fused (the stand-in label), columns: IR-only
                pick = torch.from_numpy(rows).to(ir_pred.device)
                self.cm[key] += confusion_matrix(ir_pred[pick], fused_pred[pick], self.num_classes)


@torch.no_grad()
def label_free_signals(model: nn.Module, target: TargetPairs, class_names, device, batch_size: int,
                       max_pairs: int) -> dict:
    """The signals of the module docstring over at most `max_pairs` target pairs (evenly spaced)."""
    model.eval()
    chosen = np.array(evenly(len(target), max_pairs))
    has_fused = "fused" in getattr(model, "supported_modes", ())
    tally = _Tally(len(class_names))
    for chunk in batches(len(chosen), batch_size):
        index = chosen[chunk]
        ir = ir_batch(target.ir[index], device)
        ir_pred = tally.add("ir_only", ir_only_logits(model, ir))
        if has_fused:
            fused_pred = tally.add("fused", model(eo=eo_batch(target.eo[index], device), ir=ir, mode="fused")["out"])
            tally.compare(ir_pred, fused_pred, target.night[index])
    return _signals(tally, class_names, len(chosen), int(target.night[chosen].sum()), has_fused)


def _share(pixels: np.ndarray, class_names) -> dict:
    total = max(pixels.sum(), 1)
    return {name: float(v / total) for name, v in zip(class_names, pixels)}


def _signals(tally: _Tally, class_names, pairs: int, night: int, has_fused: bool) -> dict:
    total = tally.pixels["ir_only"].sum()
    out = {"pairs": pairs, "day_pairs": pairs - night, "night_pairs": night,
           "confidence_ir_only": tally.confidence["ir_only"] / max(total, 1),
           "class_share_ir_only": _share(tally.pixels["ir_only"], class_names)}
    if has_fused:
        for key in ("day", "night"):
            equal, n = tally.agree[key]
            out[f"agreement_{key}"] = equal / n if n else None
            out[f"fused_miou_{key}"] = mean_iou(iou_per_class(tally.cm[key].numpy())) if n else None
        out["confidence_fused"] = tally.confidence["fused"] / max(total, 1)
        out["class_share_fused"] = _share(tally.pixels["fused"], class_names)
        out["share_gap"] = float(sum(abs(out["class_share_ir_only"][c] - out["class_share_fused"][c])
                                     for c in class_names))
    return out
