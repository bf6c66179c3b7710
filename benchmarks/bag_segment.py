"""`python -m csk_ros.bag segment` against the bare backend on the same 640x480 frames, and its memory
on a long recording.

python benchmarks/bag_segment.py [--bundle DIR] [--frames 300] [--rounds 3] [--long 10000] [--out JSON]

Throughput: a bag of --frames EO/IR pairs (640x480, synthetic scenes, 10 Hz stamps), raw and compressed
(EO JPEG 95, IR PNG), is segmented end to end (read, decode, pipeline, write MCAP with mask, confidence
and colored_mask) and, side by side in the same rounds (order rotating), the bare backend runs the same
frames already prepared at the bundle size (segmenter.fused / ir_only only). Rate = IR frames per second
(the bag tool's sustained rate: from its first message to its last, as its summary reports it, so the
one-off start-up, imports and model load, is not in it); ratio = bag / bare. Two bundles: the demo bundle
at its own size (96x128: inference is a few ms, so the fixed per-frame cost of 640x480 I/O shows) and the
same architecture exported at 480x640 (inference dominates, as with a real model on a robot).

Memory: --long frames streamed through the same pipeline and MCAP writer (messages built in memory, not
read from a bag: a 10,000-frame raw 640x480 recording would be 12 GB), RSS at 1,000 and at --long frames.
Without --bundle: runs/demo/bundle (`make demo`) or the demo architecture with random weights (speed does
not depend on the weights). No ROS involved. Prints a table and writes JSON
(default benchmarks/results/bag_segment.json).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import RESULTS, print_table, write_json  # noqa: E402
from benchmarks.node_latency import default_bundle  # noqa: E402
from csk_ros.backends import load_bundle  # noqa: E402
from csk_ros.bag.__main__ import main as bag_main  # noqa: E402
from csk_ros.bag.bagio import COMPRESSED, IMAGE, MessageFactory, Topics, atomic_writer  # noqa: E402
from csk_ros.bag.params import offline_config  # noqa: E402
from csk_ros.bag.segment import OfflineSegmenter  # noqa: E402
from csk_ros.imaging.frames import InputPreparer  # noqa: E402
from csk_ros.pipeline import SegmentationPipeline  # noqa: E402
from harness.stream_client import scene  # noqa: E402

H, W = 480, 640
T0_NS, PERIOD_NS = 1_700_000_000 * 10**9, 10**8


def frames(n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    return [scene(H, W, k * 0.1) for k in range(n)]


def write_bag(path: Path, pairs, compressed: bool) -> Path:
    factory = MessageFactory()
    with atomic_writer(path) as writer:
        topics = Topics(writer, factory)
        for k, (eo, ir) in enumerate(pairs):
            t = T0_NS + k * PERIOD_NS
            he, hi = factory.header(t, "eo"), factory.header(t, "ir")
            if compressed:
                jpg = cv2.imencode(".jpg", eo[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
                png = cv2.imencode(".png", ir)[1].tobytes()
                topics.write("/eo/image/compressed", COMPRESSED, factory.compressed(jpg, "bgr8; jpeg compressed bgr8",
                                                                                 he), t)
                topics.write("/ir/image/compressed", COMPRESSED,
                             factory.compressed(png, "mono8; png compressed", hi), t)
            else:
                topics.write("/eo/image", IMAGE, factory.image(eo, "rgb8", he), t)
                topics.write("/ir/image", IMAGE, factory.image(ir, "mono8", hi), t)
    return path


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def long_run_rss(bundle: Path, n: int, work: Path) -> dict:
    """RSS after 1,000 and after n frames through the pipeline and an MCAP writer."""
    config = offline_config(None, {"model_dir": str(bundle), "backend": "onnxruntime"})
    segmenter = load_bundle(bundle, backend="onnxruntime")
    factory = MessageFactory()
    pool = frames(20)  # pixels repeat, stamps do not: the pipeline sees a stream of new messages
    marks = {}
    with atomic_writer(work / "long") as writer:
        offline = OfflineSegmenter(SegmentationPipeline(config, segmenter), Topics(writer, factory))
        offline.start(T0_NS * 1e-9, "{}")
        for k in range(n):
            t = T0_NS + k * PERIOD_NS
            eo, ir = pool[k % len(pool)]
            offline.on_message("eo", factory.image(eo, "rgb8", factory.header(t, "eo")), t * 1e-9)
            offline.on_message("ir", factory.image(ir, "mono8", factory.header(t, "ir")), t * 1e-9)
            if k + 1 in (1000, n):
                marks[k + 1] = rss_mb()
        offline.finish((T0_NS + n * PERIOD_NS) * 1e-9)
    segmenter.close()
    first, last = marks[1000], marks[n]
    return {"frames": n, "rss_mb_at_1000": first, f"rss_mb_at_{n}": last, "growth": last / first - 1}


def vga_bundle(work: Path) -> Path:
    """The demo architecture (random weights) exported at 480x640."""
    from benchmarks.backends import random_checkpoint
    from engines.export import export_bundle

    return export_bundle(random_checkpoint(work / "random_vga.pt"), work / "vga", 480, 640, log=lambda *_: None)


def throughput(bundle: Path, name: str, pairs, bags: dict, rounds: int, work: Path) -> list[dict]:
    """Bare backend and bag segment (raw, compressed) on the same frames, side by side, order rotating."""
    segmenter = load_bundle(bundle, backend="onnxruntime")
    b = segmenter.bundle
    prep = InputPreparer(b.height, b.width)
    prepared = [(prep.eo(eo, ir.shape), prep.ir(ir)) for eo, ir in pairs]

    def bare():
        t0 = time.perf_counter()
        for eo, ir in prepared:
            segmenter.fused(eo, ir) if segmenter.has_fused else segmenter.ir_only(ir)
        return len(prepared) / (time.perf_counter() - t0)

    def bag(kind, k):
        out, summary = work / f"out_{kind}_{k}", work / f"summary_{kind}_{k}.json"
        with contextlib.redirect_stdout(io.StringIO()):  # its summary table, once per run: the JSON has it
            assert bag_main(["segment", str(bags[kind]), str(out), "--bundle", str(bundle), "--backend",
                             "onnxruntime", "--quiet", "--json", str(summary)]) == 0
        shutil.rmtree(out)
        return json.loads(summary.read_text())["frames_per_s"]

    runs = {"bare backend": [], "bag segment raw": [], "bag segment compressed": []}
    labels = list(runs)
    for k in range(rounds):
        for label in labels[k % 3:] + labels[:k % 3]:
            runs[label].append(bare() if label == "bare backend" else bag(label.split()[-1], k))
    segmenter.close()
    bare_fps = float(np.median(runs["bare backend"]))
    return [{"bundle": name, "bundle_size": [b.height, b.width], "what": label, "frames": len(pairs),
             "rounds": len(rates), "median_fps": float(np.median(rates)),
             "ratio_to_bare": float(np.median(rates)) / bare_fps, "all_fps": rates} for label, rates in runs.items()]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle")
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--long", type=int, default=10000, help="frames of the memory run (0: skip it)")
    p.add_argument("--out", default=str(RESULTS / "bag_segment.json"))
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="csk_bag_bench_"))
    bundle = Path(args.bundle) if args.bundle else default_bundle(work)
    pairs = frames(args.frames)
    bags = {kind: write_bag(work / f"in_{kind}", pairs, kind == "compressed") for kind in ("raw", "compressed")}

    bundles = {"demo": bundle, "demo at 480x640": vga_bundle(work)}
    rows, table = [], []
    for name, path in bundles.items():
        for row in throughput(path, name, pairs, bags, args.rounds, work):
            rows.append(row)
            table.append([name, f"{row['bundle_size'][0]}x{row['bundle_size'][1]}", row["what"],
                          f"{row['median_fps']:.1f}", f"{row['ratio_to_bare']:.3f}",
                          " ".join(f"{r:.1f}" for r in row["all_fps"])])
    print(f"{len(pairs)} frames of {W}x{H}; {args.rounds} rounds side by side per bundle; ONNX Runtime CPU")
    print_table(["bundle", "size", "run", "IR frames/s (median)", "ratio to bare", "per round"], table)
    memory = None
    if args.long:
        memory = long_run_rss(bundle, args.long, work)
        print(f"memory: RSS {memory['rss_mb_at_1000']:.0f} MB at 1,000 frames, "
              f"{memory[f'rss_mb_at_{args.long}']:.0f} MB at {args.long:,}: growth {100 * memory['growth']:.1f} %")
    out = write_json(Path(args.out), {"bundles": {k: str(v) for k, v in bundles.items()}, "frame_size": [H, W],
                                      "frames": len(pairs), "rows": rows, "memory": memory})
    print(f"wrote {out}")
    shutil.rmtree(work, ignore_errors=True)  # the input bags alone are ~0.5 GB
    return 0


if __name__ == "__main__":
    sys.exit(main())
