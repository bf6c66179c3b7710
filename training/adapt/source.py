"""Labelled source frames mixed into self-training, so the model does not forget what its labels taught.

Pseudo-labels alone drift: classes the teacher rarely predicts with confidence fade, and errors it
is sure of get learned. A share of labelled frames from the training data (augmented as in
training) keeps the supervised signal in every step. They come from the checkpoint's own data
section by default, or from another training config (`--source-config`, `--source-root`).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader

from ..config import load_config
from ..data import build_dataset


class SourceError(ValueError):
    """The source frames cannot be read: one line naming the switch that fixes it."""


def source_data_config(ckpt_config: dict, config_path: str | None, root: str | None) -> dict:
    try:
        data = dict(load_config(config_path)["data"] if config_path else ckpt_config["data"])
    except (FileNotFoundError, ValueError) as exc:
        raise SourceError(f"--source-config: {exc}") from None
    if root:
        data["root"] = root
    return data


def source_batches(data_cfg: dict, num_classes: int, batch_size: int, seed: int) -> Iterator[dict]:
    """Endless augmented labelled batches of the source train split (a new shuffle and augmentation
    per pass)."""
    try:
        dataset = build_dataset(data_cfg, "train", train=True)
    except (FileNotFoundError, ValueError) as exc:
        raise SourceError(f"source frames (against forgetting): {exc}; pass --source-config/--source-root, "
                          "or --source-weight 0") from None
    if dataset.num_classes != num_classes:
        raise SourceError(f"source frames have {dataset.num_classes} classes, the model {num_classes}: pass a "
                          "--source-config of the model's dataset, or --source-weight 0")
    if len(dataset) < batch_size:
        raise SourceError(f"source train split has {len(dataset)} frames, fewer than one batch of {batch_size}: "
                          "lower --batch-size, or --source-weight 0")
    return _cycle(dataset, batch_size, seed)


def _cycle(dataset, batch_size: int, seed: int) -> Iterator[dict]:
    epoch = 0
    while True:
        dataset.set_epoch(epoch)
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True, num_workers=0,
                            generator=torch.Generator().manual_seed(seed * 1000 + epoch))
        yield from loader
        epoch += 1
