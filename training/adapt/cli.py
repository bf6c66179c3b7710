"""python -m training.adapt --checkpoint CKPT --pairs FOLDER|BAG --out DIR [options]

Adapts a trained CSK-Net (or IR DeepLabV3) to a robot's own thermal camera from unlabelled EO/IR
pairs: AdaBN on the IR-only path, then cross-modal self-training, then AdaBN on the final weights.
Writes DIR/best.pt (the checkpoint format training.evaluate, engines.export and the node's bundle
read; the adaptation recorded under "adaptation"), DIR/adapt.json and TensorBoard scalars in DIR/tb,
and prints a summary table. See docs/adaptation.md for the loop on a robot.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from csk_ros.bag.bagio import BagError
from csk_ros.bundle import sha256_of
from csk_ros.imaging.thermal import ThermalScaling

from ..checkpoint import model_from_checkpoint, save_checkpoint
from ..data import dataset_classes
from .adabn import reestimate
from .options import PSEUDO_LOSSES, TEACHERS, TRAINABLE, AdaptOptions
from .report import log_measurements, peak_rss_mb, plain, summary
from .selftrain import self_train
from .signals import label_free_signals
from .source import SourceError, source_batches, source_data_config
from .target import TargetError, load_target
from .validation import ValError, labelled_miou, labelled_sets

OUT_NAME = "best.pt"  # the name every tool and study reads; no selection happens, it is the adapted model


def load_adaptable(path) -> tuple[torch.nn.Module, dict]:
    """(model, checkpoint) of a model with an IR-only path, or a one-line refusal."""
    try:
        model, ckpt = model_from_checkpoint(path)
    except RuntimeError as exc:  # state dict and config disagree
        raise ValueError(f"checkpoint {path} does not match its own model config: {first_line(exc)}") from None
    if "ir_only" not in getattr(model, "supported_modes", ()):
        cfg = ckpt["config"]["model"]
        kind = cfg["arch"] + (f" ({cfg.get('modality')})" if cfg["arch"] == "deeplabv3" else "")
        raise ValueError(f"checkpoint {path} is a {kind} model without an IR-only path: adapt a csknet, or a "
                         "deeplabv3 with model.modality=ir")
    return model, ckpt


def working_size(data_cfg: dict) -> tuple[int, int]:
    """The size the model was evaluated at (and the bundle is exported at by default)."""
    for key in ("eval_size", "size"):
        if data_cfg.get(key):
            return tuple(int(v) for v in data_cfg[key])
    crop = (data_cfg.get("augment") or {}).get("crop")
    if crop:
        return tuple(int(v) for v in crop)
    raise ValueError("the checkpoint's data config names no input size (data.eval_size)")


def training_crop(opts: AdaptOptions, data_cfg: dict, size: tuple[int, int]) -> tuple[int, int]:
    """--crop, else the checkpoint's training crop where it fits the frame, else the whole frame."""
    crop = opts.crop or (data_cfg.get("augment") or {}).get("crop") or size
    crop = tuple(int(v) for v in crop)
    if crop[0] > size[0] or crop[1] > size[1]:
        if opts.crop:
            raise ValueError(f"--crop {crop[0]} {crop[1]} is larger than the frames ({size[0]}x{size[1]})")
        return size
    return crop


def measure(model, target, class_names, opts, val_sets, device) -> tuple[dict, dict | None]:
    signals = label_free_signals(model, target, class_names, device, opts.batch_size, opts.signal_pairs)
    labelled = labelled_miou(model, val_sets, len(class_names), device, opts.batch_size) if val_sets else None
    return signals, labelled


def adapt(checkpoint, pairs, out, opts: AdaptOptions, val_root=None, val_ir_dir=None, val_split: str = "val",
          val_raw: bool = False, force: bool = False, quiet: bool = False) -> dict:
    """The whole adaptation (module docstring); returns the record it saved."""
    t0 = time.monotonic()
    opts.check()
    out = Path(out)
    if (out / OUT_NAME).exists() and not force:
        raise ValueError(f"{out / OUT_NAME} exists: pass --force to replace it, or choose another --out")
    device = torch.device(opts.device)
    model, ckpt = load_adaptable(checkpoint)
    model.to(device)
    data_cfg = ckpt["config"]["data"]
    class_names, _ = dataset_classes(data_cfg)
    if opts.fused_weight > 0 and "fused" not in model.supported_modes:
        raise ValueError("--fused-weight > 0 needs a model with a fused pass (csknet)")
    size = working_size(data_cfg)
    crop = training_crop(opts, data_cfg, size)
    val_sets = labelled_sets(data_cfg, size, val_root, val_split, val_ir_dir, val_raw) if val_root else None
    source = None
    if opts.selftrain and opts.source_weight > 0:
        source_cfg = source_data_config(ckpt["config"], opts.source_config, opts.source_root)
        source = source_batches(source_cfg, len(class_names), opts.batch_size, opts.seed)
    bar = None if quiet else (lambda it: tqdm(it, desc="read pairs", unit="pair", leave=False, dynamic_ncols=True))
    target = load_target(pairs, size, ThermalScaling.from_dict(data_cfg.get("thermal")), opts.night_luma,
                         opts.max_pairs, opts.eo_topic, opts.ir_topic, opts.every, opts.slop_s, bar, opts.params)
    out.mkdir(parents=True, exist_ok=True)
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(out / "tb"))
    before = measure(model, target, class_names, opts, val_sets, device)
    log_measurements(writer, 0, *before)
    steps: dict = {}
    progress = None if quiet else (lambda it: tqdm(it, desc="AdaBN", leave=False, dynamic_ncols=True))
    if opts.adabn:
        steps["adabn"] = reestimate(model, target, opts.batch_size, device, progress, opts.adabn_prior)
    if opts.selftrain:
        steps["selftrain"] = self_train(model, target, opts, crop, device, source, writer, quiet)
        if opts.adabn and not opts.adabn_prior:  # with a prior, keep the mixed statistics the weights learnt under
            steps["adabn_final"] = reestimate(model, target, opts.batch_size, device, progress)
    after = measure(model, target, class_names, opts, val_sets, device)
    log_measurements(writer, max(1, opts.steps if opts.selftrain else 1), *after)
    writer.close()
    record = plain({
        "from_checkpoint": str(checkpoint), "from_sha256": sha256_of(checkpoint), "out": str(out / OUT_NAME),
        "options": opts.record(), "crop": list(crop), "target": target.record(), "steps": steps,
        "signals": {"before": before[0], "after": after[0]},
        "labelled": {"before": before[1], "after": after[1], "root": str(val_root), "ir_dir": str(val_ir_dir),
                     "split": val_split} if val_sets else None,
        "previous": ckpt.get("adaptation"), "wall_s": time.monotonic() - t0, "peak_rss_mb": peak_rss_mb()})
    save(model, ckpt, out / OUT_NAME, record)
    (out / "adapt.json").write_text(json.dumps(record, indent=2))
    return record


def save(model, ckpt: dict, path: Path, record: dict) -> None:
    """Same format as training's checkpoints: the source's config, stage and step; the adaptation beside them.
    metrics: the labelled numbers after adaptation where there were any (the manifest shows them)."""
    metrics = {"adapted": True, "label_free": record["signals"]["after"]}
    if record["labelled"]:
        metrics["labelled"] = record["labelled"]["after"]
    save_checkpoint(path, model_state={k: v.cpu() for k, v in model.state_dict().items()}, config=ckpt["config"],
                    stage=ckpt.get("stage", "csk"), step=ckpt.get("step", 0), metrics=metrics,
                    extra={"adaptation": record, "selection": ckpt.get("selection")})


def first_line(exc: BaseException) -> str:
    return next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m training.adapt", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="trained CSK-Net or IR DeepLabV3 checkpoint (best.pt)")
    p.add_argument("--pairs", required=True, help="folder with vi/ (or eo/) and ir/, or a rosbag2 recording")
    p.add_argument("--out", required=True, help="output folder: best.pt, adapt.json, tb/")
    p.add_argument("--force", action="store_true", help="replace OUT/best.pt")
    d = AdaptOptions()
    g = p.add_argument_group("steps")
    g.add_argument("--no-adabn", dest="adabn", action="store_false", help="keep the source BatchNorm statistics")
    g.add_argument("--no-selftrain", dest="selftrain", action="store_false", help="AdaBN only")
    g.add_argument("--adabn-prior", type=float, default=d.adabn_prior,
                   help="share of the source BatchNorm statistics kept (0: the new camera's only)")
    g = p.add_argument_group("self-training")
    g.add_argument("--steps", type=int, default=d.steps)
    g.add_argument("--batch-size", type=int, default=d.batch_size)
    g.add_argument("--lr", type=float, default=d.lr)
    g.add_argument("--weight-decay", type=float, default=d.weight_decay)
    g.add_argument("--crop", type=int, nargs=2, metavar=("H", "W"), help="training crop (default: the checkpoint's)")
    g.add_argument("--teacher", choices=TEACHERS, default=d.teacher)
    g.add_argument("--ema-decay", type=float, default=d.ema_decay)
    g.add_argument("--loss", choices=PSEUDO_LOSSES, default=d.loss)
    g.add_argument("--temperature", type=float, default=d.temperature, help="KL temperature (--loss kl)")
    g.add_argument("--confidence", type=float, default=d.confidence, help="teacher confidence a pixel needs")
    g.add_argument("--class-balance", type=float, default=d.class_balance,
                   help="pixels weigh (mean class count / their teacher class's count) ** this; 0: off")
    g.add_argument("--night-confidence", type=float, default=d.night_confidence, help="... on night frames")
    g.add_argument("--night-weight", type=float, default=d.night_weight, help="weight of night frames' pixels")
    g.add_argument("--night-luma", type=float, default=d.night_luma,
                   help="EO mean luma below which a frame without a D/N name mark is night")
    g.add_argument("--trainable", choices=TRAINABLE, default=d.trainable)
    g.add_argument("--fused-weight", type=float, default=d.fused_weight, help="pseudo-labels on the fused pass too")
    g.add_argument("--source-weight", type=float, default=d.source_weight, help="labelled source CE; 0: none")
    g.add_argument("--source-config", help="training config naming the source frames (default: the checkpoint's)")
    g.add_argument("--source-root", help="data.root of the source frames")
    g.add_argument("--log-every", type=int, default=d.log_every)
    g = p.add_argument_group("target pairs")
    g.add_argument("--max-pairs", type=int, default=d.max_pairs)
    g.add_argument("--every", type=int, default=d.every, help="bags: every N-th pair")
    g.add_argument("--slop", type=float, default=d.slop_s, help="bags: max EO/IR stamp difference (s)")
    g.add_argument("--eo-topic"), g.add_argument("--ir-topic")
    g.add_argument("--params", help="the node's parameters file: its eo_to_ir_homography registers EO onto IR")
    g = p.add_argument_group("measurement")
    g.add_argument("--signal-pairs", type=int, default=d.signal_pairs)
    g.add_argument("--val-root", help="a labelled set (MFNet/MSRS/PST900 layout) scored before and after")
    g.add_argument("--val-ir-dir", help="thermal images of the new camera for the --val-root frames (same names)")
    g.add_argument("--val-split", default="val")
    g.add_argument("--val-raw", action="store_true", help="with --val-ir-dir: score the frames' own thermal too")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", default=d.device, choices=("cpu", "cuda"))
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    fields = set(AdaptOptions.__dataclass_fields__) - {"extra", "slop_s"}
    opts = AdaptOptions(**{k: getattr(args, k) for k in fields}, slop_s=args.slop)
    opts.crop = tuple(args.crop) if args.crop else None
    return args, opts


def main(argv=None) -> int:
    args, opts = parse_args(argv)
    try:
        if opts.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("--device cuda requested but torch sees no CUDA device")
        record = adapt(args.checkpoint, args.pairs, args.out, opts, args.val_root, args.val_ir_dir, args.val_split,
                       args.val_raw, args.force, args.quiet)
    except (TargetError, SourceError, ValError, BagError, FileNotFoundError, ValueError) as exc:
        print(f"error: {first_line(exc)}", file=sys.stderr)
        return 2
    print(summary(record))
    return 0
