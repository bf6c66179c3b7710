"""Labelled mIoU before and after, where the user has a labelled set of the new camera (`--val-root`).

`--val-ir-dir` swaps the thermal image of each labelled frame for the file of the same name in that
folder: a second thermal pipeline over the same frames and labels (`mfnet_subset/ir_msrs`, pixel-
aligned with `images/`). Only the frames with such a file are scored. `--val-raw` scores the frames
with their own thermal too: that is the forgetting check (the source camera, after adaptation).
Never choose settings on the frames you report: pass a split the adaptation is not judged on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from ..data import build_dataset
from ..evaluate import confusion_over
from ..metrics import summarize

LAYOUTS = (("mfnet", ("images", "labels")), ("msrs", ("vi", "ir", "Segmentation_labels")),
           ("pst900", ("train", "test")))


class ValError(ValueError):
    """A labelled set that cannot be scored: one line naming the fix."""


def dataset_name(data_cfg: dict, root: Path) -> str:
    """The checkpoint's dataset kind; a synthetic-trained model is scored on whichever layout `root` has."""
    if data_cfg["name"] != "synthetic":
        return data_cfg["name"]
    for name, subdirs in LAYOUTS:
        if all((root / d).is_dir() for d in subdirs):
            return name
    raise ValError(f"--val-root {root}: not an MFNet (images/ labels/), MSRS (vi/ ir/ Segmentation_labels/) or "
                   "PST900 (train/ test/) layout")


def labelled_sets(data_cfg: dict, size, root, split: str, ir_dir=None, raw: bool = False) -> dict:
    """name -> dataset: "target" (thermal from `ir_dir`) and/or "raw" (the frames' own thermal)."""
    root = Path(root)
    cfg = {"name": dataset_name(data_cfg, root), "root": str(root), "thermal": data_cfg.get("thermal"),
           "eval_size": list(size)}
    try:
        base = build_dataset(cfg, split, train=False)
        own = build_dataset(cfg, split, train=False) if raw and ir_dir else None
    except (FileNotFoundError, ValueError) as exc:
        raise ValError(f"--val-root: {exc}") from None
    if ir_dir is None:
        return {"raw": base}
    try:
        base = build_dataset(dict(cfg, ir_dir=str(ir_dir)), split, train=False)
    except (FileNotFoundError, ValueError) as exc:
        raise ValError(f"--val-ir-dir: {exc}") from None
    sets = {"target": base}
    if own is not None:
        own.source.names = list(base.source.names)  # the same frames, own thermal
        sets["raw"] = own
    return sets


@torch.no_grad()
def labelled_miou(model: nn.Module, sets: dict, num_classes: int, device, batch_size: int) -> dict:
    """{set: {mode: {"miou", "per_class_iou", "frames"}}} for the model's IR-only and fused modes."""
    modes = [m for m in ("ir_only", "fused") if m in getattr(model, "supported_modes", ())]
    out = {}
    for name, dataset in sets.items():
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
        out[name] = {}
        for mode in modes:
            cm, _ = confusion_over(model, loader, mode, num_classes, device)
            metrics = summarize(np.asarray(cm), dataset.class_names)
            out[name][mode] = {"miou": metrics["miou"], "per_class_iou": metrics["per_class_iou"],
                               "frames": len(dataset)}
    return out
