"""`make demo`: the main job on the embedded default.

Trains the EO teacher, CSK-Net and an IR-only DeepLabV3 baseline on the
procedural synthetic RGB-T set on the CPU, evaluates fused and IR-only modes
(day and night) and prints the table; then exports the model bundle and runs
it in the real ROS 2 node while the EO camera fails (demo_ros.py).
Everything lands under --out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from engines.export import export_bundle

from .checkpoint import load_checkpoint
from .config import load_config
from .demo_ros import stream_and_score
from .evaluate import evaluate_checkpoint
from .train import train

CONFIG = Path(__file__).with_name("configs") / "synthetic.yaml"


def train_stages(out: Path, overrides: list[str], teacher_epochs: int, baseline: bool) -> dict:
    """Teacher -> CSK-Net (distilled from it) -> optional IR baseline; returns checkpoint paths."""
    cfg = load_config(CONFIG, overrides)
    teacher_cfg = load_config(CONFIG, overrides + [f"train.epochs={teacher_epochs}"])
    train(teacher_cfg, out / "teacher", "teacher")
    ckpts = {"teacher": out / "teacher" / "best.pt"}
    cfg["teacher"]["checkpoint"] = str(ckpts["teacher"])
    train(cfg, out / "csk", "csk")
    ckpts["csk"] = out / "csk" / "best.pt"
    if baseline:
        base_cfg = load_config(CONFIG, overrides + ["model.arch=deeplabv3", "model.modality=ir"])
        train(base_cfg, out / "ir_baseline", "baseline")
        ckpts["ir_baseline"] = out / "ir_baseline" / "best.pt"
    return ckpts


EVALUATIONS = (
    # (row label, checkpoint key, mode, split)
    ("CSK-Net fused", "csk", "fused", "test"),
    ("CSK-Net fused (day)", "csk", "fused", "test_day"),
    ("CSK-Net fused (night)", "csk", "fused", "test_night"),
    ("CSK-Net IR-only", "csk", "ir_only", "test"),
    ("CSK-Net IR-only (day)", "csk", "ir_only", "test_day"),
    ("CSK-Net IR-only (night)", "csk", "ir_only", "test_night"),
    ("EO teacher (EO-only)", "teacher", "eo_only", "test"),
    ("IR DeepLabV3 baseline", "ir_baseline", "ir_only", "test"),
)


def results_table(rows: list[dict]) -> str:
    lines = [
        "| model / mode | split | mIoU (9 cls, MFNet protocol) | mIoU excl. unlabeled | pixel acc |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {r['label']} | {r['split']} | {100 * r['miou']:.1f} | {100 * r['miou_no_unlabeled']:.1f} "
              f"| {100 * r['pixel_acc']:.1f} |" for r in rows]
    return "\n".join(lines)


def exchanged_fraction_table(fractions: dict) -> str:
    """Markdown table of the exchanged-channel fraction per modality and stage."""
    stages = list(next(iter(fractions.values())))
    lines = ["| channels exchanged (BN scale below threshold) | " + " | ".join(stages) + " |",
             "|---|" + "---|" * len(stages)]
    lines += [f"| {modality.upper()} | " + " | ".join(f"{100 * v:.1f}%" for v in per_stage.values()) + " |"
              for modality, per_stage in fractions.items()]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--teacher-epochs", type=int, default=8)
    p.add_argument("--no-baseline", action="store_true", help="skip the IR-only DeepLabV3 baseline")
    p.add_argument("--no-ros", action="store_true", help="skip exporting the bundle and the ROS 2 node run")
    p.add_argument("overrides", nargs="*", help="config overrides for training/configs/synthetic.yaml")
    args = p.parse_args(argv)
    out = Path(args.out)
    started = time.monotonic()
    ckpts = train_stages(out, list(args.overrides), args.teacher_epochs, not args.no_baseline)
    trained = time.monotonic() - started
    rows = []
    for label, key, mode, split in EVALUATIONS:
        if key not in ckpts:
            continue
        m = evaluate_checkpoint(ckpts[key], mode, out / "eval" / f"{key}_{mode}_{split}", split, examples=2)
        rows.append({"label": label, "mode": mode, "split": split, "miou": m["miou"],
                     "miou_no_unlabeled": m["miou_no_unlabeled"], "pixel_acc": m["pixel_acc"]})
    table = results_table(rows)
    print("\nSynthetic RGB-T demo (procedural data, tiny ResNet-10 CSK-Net, CPU):\n")
    print(table)
    exchanged = load_checkpoint(ckpts["csk"])["metrics"].get("exchanged_fraction")
    if exchanged:
        table += "\n\nCSK-Net channel exchange (best.pt):\n\n" + exchanged_fraction_table(exchanged)
        print("\nCSK-Net channel exchange (best.pt; the share of each stream's channels replaced by the other's "
              "when both are present: EO borrows from IR, the IR stream stays whole for the fallback):\n")
        print(exchanged_fraction_table(exchanged))
    summary = {"rows": rows, "train_seconds": trained, "checkpoints": {k: str(v) for k, v in ckpts.items()},
               "exchanged_fraction": exchanged}
    if not args.no_ros:
        bundle = export_bundle(ckpts["csk"], out / "bundle", force=True, log=lambda *_: None)
        cfg = load_config(CONFIG, list(args.overrides))
        names = tuple(json.loads((bundle / "manifest.json").read_text())["class_names"])
        print(f"\nexported {bundle}; serving it with the ROS 2 segment node, EO camera fails half-way ...")
        ros = stream_and_score(bundle, cfg["data"], names)
        summary["ros"] = ros
        print(f"\nROS 2 node ({ros['backend']}): {ros['masks_received']} masks for {ros['frames_sent']} IR frames; "
              f"inference p50 {ros['inference_ms_p50']} ms, node overhead p50 {ros['overhead_ms_p50']} ms")
        print("mode timeline (s since the stream started, mode, reason):")
        for when, mode, reason in ros["timeline"]:
            print(f"  {when:6.2f}  {mode:8s} {reason}")
        print(f"mIoU of the published masks: EO alive {100 * ros['miou']['eo_alive']:.1f}, "
              f"EO dead (IR-only fallback) {100 * ros['miou']['eo_dead']:.1f}")
    total = time.monotonic() - started
    summary["total_seconds"] = total
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "summary.md").write_text(table + "\n")
    print(f"\ntrained in {trained:.0f} s, total {total:.0f} s; checkpoints, figures and bundle under {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
