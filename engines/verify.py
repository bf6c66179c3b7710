"""Check a bundle's engines against ONNX Runtime on the CPU before they serve.

    python -m engines.verify --bundle engines/NAME [--backend tensorrt]
        [--min-agreement 0.99] [--frames 2] [--images DIR]

For every runtime graph (fused, ir_only) the candidate backend (default:
TensorRT with the bundle's engines for this GPU, no fallback) and ONNX Runtime
on the CPU run the SAME input; the class masks must agree on at least
--min-agreement of the pixels (default 99 %) in every frame. The reference
graph is the engine's own source: the Q/DQ graph for an int8 engine built from
one (ONNX Runtime runs Q/DQ graphs on the CPU), else the float graph.

Inputs: --images DIR (the calibration layouts of `engines.build`: paired
eo/ir folders or 4-channel RGB+T images) or seeded synthetic frames (smooth
gradients plus noise), so that a run on the device needs no data.

Exit codes: 0 every graph agrees, 1 a graph disagrees (the report says which
and by how much) or the bundle is bad, 2 the candidate backend is unavailable.
scripts/deploy_jetson.sh runs this after building the engines and stops on
a non-zero exit. torch-free: it runs where the node runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass

import numpy as np

from csk_ros.bundle import Bundle, BundleError, load_manifest

DEFAULT_MIN_AGREEMENT = 0.99
RUNTIME_GRAPHS = ("fused", "ir_only")


class VerificationError(RuntimeError):
    """The candidate's masks disagree with ONNX Runtime's; the message names the graph."""


@dataclass
class GraphResult:
    graph: str
    source: str  # the ONNX file ONNX Runtime ran as reference
    precision: str
    agreement: list[float]  # per frame, fraction of pixels with the same class
    confidence_max_diff: int
    passed: bool


def synthetic_frames(height: int, width: int, count: int = 2, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Seeded camera-like frames: smooth gradients (so masks have regions) plus noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = []
    for i in range(count):
        phase = rng.uniform(0, 2 * np.pi, 4)
        base = 127.5 + 80 * np.sin(xx / max(width, 1) * 6 + phase[0]) * np.cos(yy / max(height, 1) * 4 + phase[1])
        eo = np.stack([base + 40 * np.sin(phase[2] + c) for c in range(3)], axis=-1)
        eo = np.clip(eo + rng.normal(0, 12, eo.shape), 0, 255).astype(np.uint8)
        ir = np.clip(255 - base + rng.normal(0, 8, base.shape) + 20 * np.cos(phase[3] + i), 0, 255).astype(np.uint8)
        frames.append({"eo": eo, "ir": ir})
    return frames


def image_frames(bundle: Bundle, images_dir, count: int) -> list[dict[str, np.ndarray]]:
    """Frames from real images (engines.build's calibration layouts), at the bundle size."""
    from engines.trt_calibration import calibration_batches

    inputs = ("eo", "ir") if "fused" in bundle.graphs else ("ir",)
    frames = [{k: v[0] for k, v in feed.items()}
              for feed in calibration_batches(images_dir, bundle.height, bundle.width, inputs, count,
                                              bundle.thermal_scaling)]
    if "eo" not in inputs:
        for frame in frames:
            frame["eo"] = np.zeros((bundle.height, bundle.width, 3), np.uint8)
    return frames


def reference_sessions(bundle: Bundle, precisions: dict[str, str]) -> dict[str, tuple[object, str]]:
    """graph -> (ONNX Runtime CPU session of the engine's source graph, file name)."""
    import onnxruntime as ort

    sessions = {}
    for graph, precision in precisions.items():
        record = bundle.source_graph(graph, precision)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        sessions[graph] = (ort.InferenceSession(str(record.path), sess_options=options,
                                                providers=["CPUExecutionProvider"]), record.path.name)
    return sessions


def compare(candidate, bundle: Bundle, frames: list[dict[str, np.ndarray]], precisions: dict[str, str] | None = None,
            min_agreement: float = DEFAULT_MIN_AGREEMENT) -> list[GraphResult]:
    """Run `candidate` (a csk_ros.backends.Segmenter) and ONNX Runtime CPU on the same
    frames; one GraphResult per runtime graph of the bundle."""
    graphs = [g for g in RUNTIME_GRAPHS if g in bundle.graphs]
    precisions = {g: (precisions or {}).get(g, "fp32") for g in graphs}
    sessions = reference_sessions(bundle, precisions)
    results = []
    for graph in graphs:
        session, source = sessions[graph]
        agreement, conf_diff = [], 0
        for frame in frames:
            feeds = {"eo": frame["eo"][None], "ir": frame["ir"][None]}
            ref_mask, ref_conf = session.run(["mask", "confidence"],
                                             {k: feeds[k] for k in bundle.graphs[graph].inputs})
            mask, conf = candidate.fused(frame["eo"], frame["ir"]) if graph == "fused" else \
                candidate.ir_only(frame["ir"])
            if mask.shape != ref_mask[0].shape:
                raise VerificationError(f"{graph}: mask shape {mask.shape} differs from ONNX Runtime's "
                                        f"{ref_mask[0].shape}")
            agreement.append(float((mask == ref_mask[0]).mean()))
            conf_diff = max(conf_diff, int(np.abs(conf.astype(int) - ref_conf[0].astype(int)).max()))
        results.append(GraphResult(graph, source, precisions[graph], agreement, conf_diff,
                                   passed=min(agreement) >= min_agreement))
    return results


def report_lines(results: list[GraphResult], backend: str, min_agreement: float) -> list[str]:
    lines = []
    for r in results:
        verdict = "ok" if r.passed else f"FAILED (needs >= {min_agreement:.1%})"
        lines.append(f"{r.graph} [{backend} {r.precision}] vs ONNX Runtime CPU ({r.source}): mask agreement "
                     f"min {min(r.agreement):.2%} over {len(r.agreement)} frame(s), confidence max diff "
                     f"{r.confidence_max_diff}: {verdict}")
    return lines


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m engines.verify", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", required=True, help="model bundle directory")
    p.add_argument("--backend", choices=("tensorrt", "onnxruntime"), default="tensorrt",
                   help="backend to check (default tensorrt; onnxruntime checks the checker)")
    p.add_argument("--min-agreement", type=float, default=DEFAULT_MIN_AGREEMENT,
                   help=f"fraction of mask pixels that must agree in every frame (default {DEFAULT_MIN_AGREEMENT})")
    p.add_argument("--frames", type=int, default=2, help="frames per graph (default 2)")
    p.add_argument("--images", default=None, help="real EO/IR images instead of synthetic frames")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic frames")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if not 0 < args.min_agreement <= 1 or args.frames < 1:
        print("error: --min-agreement must be in (0, 1] and --frames >= 1", file=sys.stderr)
        return 1
    try:
        bundle = load_manifest(args.bundle)
        frames = (image_frames(bundle, args.images, args.frames) if args.images
                  else synthetic_frames(bundle.height, bundle.width, args.frames, args.seed))
    except (BundleError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    from csk_ros.backends import load_bundle

    try:
        candidate = load_bundle(bundle.root, backend=args.backend, warm_up=False,
                                providers=["CPUExecutionProvider"] if args.backend == "onnxruntime" else None)
    except BundleError as exc:
        print(f"error: the {args.backend} backend cannot run this bundle here: {exc}", file=sys.stderr)
        return 2
    try:
        precision = candidate.info.get("precision") or {}  # TensorRT: per graph; ONNX Runtime: one for all
        precisions = dict(precision) if isinstance(precision, dict) else {g: precision for g in RUNTIME_GRAPHS}
        results = compare(candidate, bundle, frames, precisions, args.min_agreement)
    except (VerificationError, BundleError, ValueError, RuntimeError) as exc:
        print(f"error: verification failed: {exc}", file=sys.stderr)
        return 1
    finally:
        candidate.close()
    for line in report_lines(results, candidate.backend_name, args.min_agreement):
        print(line)
    if args.json:
        with open(args.json, "w") as f:
            json.dump([asdict(r) for r in results], f, indent=2)
    failed = [r.graph for r in results if not r.passed]
    if failed:
        print(f"error: {', '.join(failed)} disagree(s) with ONNX Runtime on more than {1 - args.min_agreement:.1%} "
              "of the pixels: do not deploy these engines (rebuild in fp32 to tell a precision loss from a "
              "broken build)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
