"""Real MFNet validation frames through the real segment node: the mIoU of the masks it publishes, and
what ~/mode says by day and by night.

scripts/isolated_ros.sh .venv/bin/python benchmarks/real_stream.py --bundle DIR [--root DIR] [--rate 10]
    [--repeat 2] [--night-eo on|off] [--out JSON]

The node runs as `python -m csk_ros.segment_node` in its own process on its shipped parameters
(config/segment.yaml) with reliable QoS (so that every frame arrives: this measures the masks, not DDS);
this process publishes the val frames at --rate Hz, every day frame first, then every night frame
(names ending D / N), --repeat times each, EO (rgb8) and IR (mono8) at 480x640 with one stamp per pair,
and scores every published mask against the frame's label (per mode: the ~/mode announced at the
frame's stamp; a frame sent without EO counts as IR-only) (MFNet protocol, 9 classes incl. unlabeled;
low-confidence pixels are 255 only with low_confidence_policy: unlabeled, off by default). Prints the
table per phase and per mode, writes JSON (default benchmarks/results/real_stream.json).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import RESULTS, print_table, write_json  # noqa: E402
from csk_ros.logic.pairing import stamp_seconds  # noqa: E402
from harness.stream_client import Driver, loopback_ros_env, start_node, stop_node  # noqa: E402
from training.data.real import MFNetSource  # noqa: E402
from training.metrics import summarize  # noqa: E402

CLASSES = ("unlabeled", "car", "person", "bike", "curve", "car_stop", "guardrail", "color_cone", "bump")


def confusion(pred: np.ndarray, label: np.ndarray, n: int) -> np.ndarray:
    valid = label < n
    return np.bincount(label[valid].astype(np.int64) * n + pred[valid].astype(np.int64),
                       minlength=n * n).reshape(n, n)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", required=True)
    p.add_argument("--root", default=str(ROOT.parent / "shared" / "data" / "mfnet_subset"))
    p.add_argument("--rate", type=float, default=10.0)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--night-eo", choices=("on", "off"), default="on",
                   help="off: the EO camera stops when the night frames start (the fallback the node exists for)")
    p.add_argument("--out", default=str(RESULTS / "real_stream.json"))
    args = p.parse_args(argv)
    source = MFNetSource(args.root, "val")
    frames = [source.load(i) for i in range(len(source))]
    order = [f for f in frames if not f["is_night"]] * args.repeat + [f for f in frames if f["is_night"]] * args.repeat
    env = loopback_ros_env()
    proc = start_node(Path(args.bundle), env, {"qos": "reliable", "qos_depth": 20})
    driver, sent = None, {}
    try:
        driver = Driver()
        if not driver.wait_for_subscribers(60):
            raise RuntimeError(f"segment node did not come up:\n{stop_node(proc)[-3000:]}")
        for f in order:
            t = time.time()
            if not (f["is_night"] and args.night_eo == "off"):
                driver.pub_eo.publish(driver.image(np.ascontiguousarray(f["eo"]), "rgb8", t, "eo_optical"))
            driver.pub_ir.publish(driver.image(np.ascontiguousarray(f["ir"]), "mono8", t, "ir_optical"))
            sent[round(t, 6)] = f
            time.sleep(1.0 / args.rate)
        driver.wait_for(lambda: len(driver.masks) >= len(sent), 10)
        with driver.lock:
            masks = list(driver.masks)
        modes = driver.mode_payloads()
        diag = driver.latest_diagnostic() or {}
    finally:
        if driver is not None:
            driver.close()
        log = stop_node(proc)
    n = len(CLASSES)
    cms, counted = {}, {}
    night_start = min(t for t, f in sent.items() if f["is_night"])
    mode_at = []  # (time, mode, reason) from ~/mode
    for m in modes:
        mode_at.append((m["since"], m["mode"], m["reason"]))
    for _, msg in masks:
        stamp = round(stamp_seconds(msg.header.stamp), 6)
        if stamp not in sent:
            continue
        f = sent[stamp]
        pred = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.width)
        running = [mode for since, mode, _ in mode_at if since <= stamp + 1e-6]
        mode = running[-1] if running else "unknown"  # the announced mode at the frame's stamp ...
        if f["is_night"] and args.night_eo == "off":
            mode = "ir_only"  # ... but a frame without EO can only have run IR-only (unpaired, before eo_stale)
        cm = confusion(pred, np.asarray(f["label"]), n)
        for key in ("all", "night" if f["is_night"] else "day", f"{'night' if f['is_night'] else 'day'}/{mode}"):
            cms[key] = cms.get(key, 0) + cm
            counted[key] = counted.get(key, 0) + 1
    rows, table = [], []
    for key, cm in cms.items():
        s = summarize(cm, CLASSES)
        rows.append({"subset": key, "miou": s["miou"], "frames": counted[key], "per_class": s["per_class_iou"]})
        table.append([key, f"{100 * s['miou']:.1f}", counted[key]])
    night_modes = [(since, mode, reason) for since, mode, reason in mode_at if since >= night_start - 0.5]
    print(f"{len(masks)} masks for {len(sent)} IR frames ({args.repeat} x {len(frames)} val frames, "
          f"{args.rate:g} Hz); backend {diag.get('backend')}, masks fused / IR-only "
          f"{diag.get('masks_fused', 0)} / {diag.get('masks_ir_only', 0)}")
    print_table(["frames / mode", "mIoU %", "frames"], table)
    print("~/mode:", "; ".join(f"{mode} ({reason}) from {since - min(sent):.1f} s" for since, mode, reason in mode_at))
    out = write_json(Path(args.out), {"bundle": args.bundle, "root": args.root, "rate_hz": args.rate,
                                      "night_eo": args.night_eo,
                                      "repeat": args.repeat, "masks": len(masks), "sent": len(sent),
                                      "rows": rows, "modes": mode_at, "night_modes": night_modes,
                                      "night_starts_at_s": night_start - min(sent), "diagnostics": diag,
                                      "node_log_tail": log[-2000:]})
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
