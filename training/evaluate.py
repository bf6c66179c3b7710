"""Evaluate a checkpoint in fused, IR-only or EO-only mode.

python -m training.evaluate --checkpoint CKPT --mode fused|ir_only|eo_only --out DIR [--split test]

Writes metrics.json, metrics.md, confusion.png and a few prediction PNGs
(EO | IR | label | prediction, in the class palette).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from csk_ros.imaging.frames import colorize, palette_lut

from .checkpoint import model_from_checkpoint
from .metrics import confusion_matrix, summarize


@torch.no_grad()
def confusion_over(model, loader, mode: str, num_classes: int, device, max_batches=None,
                   keep_examples: int = 0, progress: bool = False):
    """Confusion matrix of `model` in `mode` over `loader`, plus up to
    `keep_examples` (eo, ir, label, pred) numpy tuples for figures."""
    model.eval()
    cm = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    examples = []
    for i, batch in enumerate(tqdm(loader, desc=f"eval {mode}", disable=not progress, leave=False)):
        if max_batches is not None and i >= max_batches:
            break
        eo, ir, label = batch["eo"].to(device), batch["ir"].to(device), batch["label"].to(device)
        pred = model.logits(eo, ir, mode).argmax(1)
        cm += confusion_matrix(pred, label, num_classes)
        for j in range(min(len(pred), keep_examples - len(examples))):
            examples.append((batch["eo"][j].permute(1, 2, 0).numpy(), batch["ir"][j, 0].numpy(),
                             batch["label"][j].numpy(), pred[j].cpu().numpy()))
    return cm.numpy(), examples


def markdown_table(metrics: dict) -> str:
    rows = [
        f"# {metrics['mode']} on {metrics['split']}",
        "",
    ]
    selection = metrics.get("model_selection") or {}
    if selection.get("test_selection_forced"):
        rows += [(f"**Warning:** this checkpoint was selected on `{selection['split']}` "
                  "(--allow-test-selection); test numbers are optimistic."), ""]
    rows += [
        f"mIoU (all classes incl. unlabeled, MFNet protocol): **{100 * metrics['miou']:.2f}**  ",
        f"mIoU excluding unlabeled: {100 * metrics['miou_no_unlabeled']:.2f}  ",
        f"pixel accuracy: {100 * metrics['pixel_acc']:.2f}",
        "",
        "| class | IoU |",
        "|---|---|",
    ]
    rows += [f"| {name} | {'n/a' if v is None else f'{100 * v:.2f}'} |" for name, v in metrics["per_class_iou"].items()]
    return "\n".join(rows) + "\n"


def save_figures(out: Path, cm: np.ndarray, examples, class_names, palette) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(7, 6))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("prediction")
    ax.set_ylabel("ground truth")
    fig.colorbar(im, ax=ax, label="row-normalised")
    fig.tight_layout()
    fig.savefig(out / "confusion.png", dpi=100)
    plt.close(fig)
    for k, (eo, ir, label, pred) in enumerate(examples):
        fig, axes = plt.subplots(1, 4, figsize=(12, 3))
        lut = palette_lut(palette, rgb=True, id_255=(255, 255, 255))  # matplotlib is RGB; 255 = ignore
        panels = (eo, ir, colorize(label.astype(np.uint8), lut), colorize(pred.astype(np.uint8), lut))
        for ax, img, title in zip(axes, panels, ("EO", "IR", "label", "prediction")):
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None)
            ax.set_title(title)
            ax.axis("off")
        fig.tight_layout()
        fig.savefig(out / f"prediction_{k:02d}.png", dpi=80)
        plt.close(fig)


def evaluate_checkpoint(checkpoint, mode: str, out, split: str = "test", device: str = "cpu",
                        batch_size: int = 4, num_workers: int = 0, examples: int = 4, data_overrides=None) -> dict:
    from .data import build_dataset

    model, ckpt = model_from_checkpoint(checkpoint)
    if mode not in model.supported_modes:
        raise ValueError(f"checkpoint {checkpoint} ({ckpt['config']['model']['arch']}) supports modes "
                         f"{list(model.supported_modes)}, not {mode!r}")
    model.to(device)
    data_cfg = dict(ckpt["config"]["data"], **(data_overrides or {}))
    dataset = build_dataset(data_cfg, split, train=False)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    cm, kept = confusion_over(model, loader, mode, dataset.num_classes, device, keep_examples=examples, progress=True)
    metrics = summarize(cm, dataset.class_names)
    metrics.update(mode=mode, split=split, checkpoint=str(checkpoint), num_images=len(dataset),
                   # which split chose this checkpoint; test_selection_forced=True makes test numbers optimistic
                   model_selection=ckpt.get("selection"))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (out / "metrics.md").write_text(markdown_table(metrics))
    save_figures(out, cm, kept, dataset.class_names, dataset.palette)
    return metrics


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--mode", required=True, choices=("fused", "ir_only", "eo_only"))
    p.add_argument("--out", required=True)
    p.add_argument("--split", default="test", help="test | test_day | test_night | val (dataset-dependent)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--data-root", help="override data.root of the checkpoint's config")
    args = p.parse_args(argv)
    try:
        metrics = evaluate_checkpoint(args.checkpoint, args.mode, args.out, args.split, args.device,
                                      args.batch_size, args.num_workers,
                                      data_overrides={"root": args.data_root} if args.data_root else None)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(markdown_table(metrics))
    print(f"wrote {args.out}/metrics.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
