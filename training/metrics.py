"""Segmentation metrics from a confusion matrix (rows: ground truth, cols: prediction).

The headline mIoU follows the MFNet protocol of RTFNet/CRM: the mean over ALL
classes including `unlabeled` (class 0). `miou_no_unlabeled` excludes class 0.
A class absent from both ground truth and prediction has IoU NaN and is left
out of the means.
"""

from __future__ import annotations

import numpy as np
import torch

from .data.classes import IGNORE_INDEX


def confusion_matrix(pred: torch.Tensor, label: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Accumulable int64 CxC matrix; pixels labelled IGNORE_INDEX are skipped."""
    valid = label != IGNORE_INDEX
    index = label[valid].long() * num_classes + pred[valid].long()
    return torch.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes).cpu()


def iou_per_class(cm: np.ndarray) -> np.ndarray:
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    denom = cm.sum(0) + cm.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, tp / denom, np.nan)


def mean_iou(iou: np.ndarray) -> float:
    """Mean of the classes that occur (NaN IoU skipped); NaN when none does."""
    return float(np.nanmean(iou)) if np.any(~np.isnan(iou)) else float("nan")


def summarize(cm: np.ndarray, class_names: tuple | list) -> dict:
    cm = np.asarray(cm)
    iou = iou_per_class(cm)
    total = cm.sum()
    return {
        "miou": mean_iou(iou),
        "miou_no_unlabeled": mean_iou(iou[1:]),
        "per_class_iou": {name: (None if np.isnan(v) else float(v)) for name, v in zip(class_names, iou)},
        "pixel_acc": float(np.diag(cm).sum() / total) if total else float("nan"),
        "miou_protocol": "MFNet/RTFNet: mean over all classes including unlabeled (class 0); "
        "miou_no_unlabeled excludes class 0; classes absent from GT and prediction are skipped",
    }
