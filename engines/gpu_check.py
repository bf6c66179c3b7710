"""The first thing to run on a new GPU machine: build, run and time the bundle's TensorRT engines.

    python -m engines.gpu_check --bundle engines/NAME [--precisions fp16,int8] [--frames 4]
        [--runs 50] [--images DIR] [--json FILE]

On a machine with TensorRT (a Jetson, an x86 GPU box), per precision: build the engines with
`engines.build` (timed; int8 from the bundle's TensorRT-flavour Q/DQ graphs, so `python -m
engines.quantize --activations int8-symmetric` must have run on the dev machine), run them and ONNX
Runtime on the CPU on the SAME frames (engines.verify's comparison: the reference is each engine's
source graph), and time every backend. Prints one table (mask agreement, latency median / p95,
engine build time) and writes the same rows as JSON.

Exit codes: 0 every engine agrees with ONNX Runtime, 1 a parity failure, a failed build or a bad
bundle, 2 TensorRT is unavailable here. torch-free: it runs where the node runs.

Written without a GPU (none was available): unverified on real TensorRT until it has run on one.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np

from csk_ros.bundle import Bundle, BundleError, load_manifest
from engines.verify import RUNTIME_GRAPHS, compare, image_frames, synthetic_frames

PRECISIONS = ("fp16", "int8")
MIN_AGREEMENT = {"fp16": 0.99, "int8": 0.97, "fp32": 0.995}  # INT8 moves near-tied pixels: a looser bar


@dataclass
class Row:
    backend: str
    precision: str
    graph: str
    agreement_min: float | None  # vs ONNX Runtime; None for ONNX Runtime itself
    median_ms: float
    p95_ms: float
    build_s: float | None
    passed: bool


def latency_ms(run, runs: int) -> tuple[float, float]:
    """(median, p95) wall time of `run()` in ms after two warm-up calls."""
    for _ in range(2):
        run()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        run()
        times.append(1000.0 * (time.perf_counter() - started))
    return float(np.median(times)), float(np.percentile(times, 95))


def graph_call(segmenter, graph: str, frame: dict):
    """A no-argument call of `graph` on `frame` (what latency_ms times)."""
    if graph == "fused":
        return lambda: segmenter.fused(frame["eo"], frame["ir"])
    return lambda: segmenter.ir_only(frame["ir"])


def build_engines(bundle: Bundle, precision: str) -> float:
    """Build the precision's engines with engines.build; returns the seconds it took."""
    from engines import build

    started = time.monotonic()
    code = build.main(["--bundle", str(bundle.root), "--precision", precision])
    if code != 0:
        raise BundleError(f"engines.build --precision {precision} failed (exit {code}; its error is above)")
    return time.monotonic() - started


def tensorrt_rows(bundle: Bundle, precision: str, frames: list[dict], runs: int, build_s: float) -> list[Row]:
    """Load the precision's engines, compare them with ONNX Runtime and time them."""
    from csk_ros.backends import Segmenter
    from csk_ros.backends.tensorrt_backend import TensorRTRunner

    graphs = tuple(g for g in RUNTIME_GRAPHS if g in bundle.graphs)
    segmenter = Segmenter(bundle, TensorRTRunner(bundle, graphs, precision=precision))
    try:
        results = compare(segmenter, bundle, frames, {g: precision for g in graphs}, MIN_AGREEMENT[precision])
        return [Row("tensorrt", precision, r.graph, min(r.agreement),
                    *latency_ms(graph_call(segmenter, r.graph, frames[0]), runs), round(build_s, 1), r.passed)
                for r in results]
    finally:
        segmenter.close()


def onnxruntime_rows(bundle: Bundle, frames: list[dict], runs: int) -> list[Row]:
    """ONNX Runtime on the CPU, fp32 graphs: the reference every engine is compared with, timed too."""
    from csk_ros.backends import load_bundle

    segmenter = load_bundle(bundle.root, backend="onnxruntime", warm_up=False, providers=["CPUExecutionProvider"])
    try:
        return [Row("onnxruntime-cpu", "fp32", g, None, *latency_ms(graph_call(segmenter, g, frames[0]), runs),
                    None, True) for g in RUNTIME_GRAPHS if g in bundle.graphs]
    finally:
        segmenter.close()


def table(rows: list[Row]) -> str:
    lines = ["| backend | precision | graph | mask agreement (min) | median ms | p95 ms | build s | parity |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        agreement = "reference" if r.agreement_min is None else f"{100 * r.agreement_min:.2f} %"
        build_s = "" if r.build_s is None else f"{r.build_s:.1f}"
        parity = "ok" if r.passed else f"FAILED (< {100 * MIN_AGREEMENT[r.precision]:.0f} %)"
        lines.append(f"| {r.backend} | {r.precision} | {r.graph} | {agreement} | {r.median_ms:.2f} | "
                     f"{r.p95_ms:.2f} | {build_s} | {parity} |")
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m engines.gpu_check", description=(__doc__ or "").split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", required=True, help="model bundle directory")
    p.add_argument("--precisions", default="fp16,int8", help="comma-separated engine precisions (fp16, int8)")
    p.add_argument("--frames", type=int, default=4, help="frames compared per graph (default 4)")
    p.add_argument("--runs", type=int, default=50, help="timed runs per graph and backend (default 50)")
    p.add_argument("--images", default=None, help="real EO/IR images instead of synthetic frames")
    p.add_argument("--json", default=None, help="also write the rows to this JSON file")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    if not precisions or set(precisions) - set(PRECISIONS) or args.frames < 1 or args.runs < 1:
        print(f"error: --precisions must name some of {PRECISIONS}; --frames and --runs must be >= 1", file=sys.stderr)
        return 1
    try:
        import csk_ros.backends.tensorrt_backend as tensorrt_backend
    except ImportError as exc:
        print(f"error: TensorRT is not usable here: {exc}", file=sys.stderr)
        return 2
    try:
        bundle = load_manifest(args.bundle)
        frames = (image_frames(bundle, args.images, args.frames) if args.images
                  else synthetic_frames(bundle.height, bundle.width, args.frames))
        info = tensorrt_backend.tensorrt_runtime_info()
        rows = onnxruntime_rows(bundle, frames, args.runs)
        for precision in precisions:
            build_s = build_engines(bundle, precision)
            rows += tensorrt_rows(load_manifest(bundle.root), precision, frames, args.runs, build_s)
    except (BundleError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"TensorRT {info[0]} on {info[1]} (sm {info[2]}, {info[3]} SMs); {len(frames)} frame(s), {args.runs} runs")
    print(table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"tensorrt": info[0], "gpu": info[1], "compute_capability": info[2], "sm_count": info[3],
                       "rows": [asdict(r) for r in rows]}, f, indent=2)
    failed = [f"{r.graph} {r.precision}" for r in rows if not r.passed]
    if failed:
        print(f"error: parity failure: {', '.join(failed)} disagree(s) with ONNX Runtime; do not deploy these "
              "engines", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
