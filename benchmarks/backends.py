"""Latency of the deploy graphs: torch eager vs ONNX Runtime (and TensorRT /
ORT-CUDA where present), at the bundle size and at 480x640, plus the
parameters and MACs of ir_only.onnx next to a single-modality DeepLabV3.

python benchmarks/backends.py [--checkpoint CKPT] [--threads N] [--runs N] [--out JSON]

Without --checkpoint it benchmarks the synthetic demo architecture with
random weights (latency does not depend on the weights). Prints a table and
writes JSON (default benchmarks/results/backends.json).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import RESULTS, print_table, time_calls, write_json  # noqa: E402
from engines.export import export_bundle, export_graph  # noqa: E402
from engines.graphs import GRAPH_INPUTS, DeployGraph  # noqa: E402
from engines.onnx_cost import onnx_cost  # noqa: E402
from training.checkpoint import model_from_checkpoint, save_checkpoint  # noqa: E402
from training.config import load_config  # noqa: E402
from training.model import build_model, ir_only_as_deeplabv3  # noqa: E402

CONFIG = Path(__file__).resolve().parents[1] / "training" / "configs" / "synthetic.yaml"


def random_checkpoint(path: Path, overrides: list[str] = ()) -> Path:
    cfg = load_config(CONFIG, list(overrides))
    model = build_model(cfg["model"])
    save_checkpoint(path, model_state=model.state_dict(), config=cfg, stage="csk", step=0)
    return path


def feeds(height: int, width: int, graph: str) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    all_inputs = {"eo": rng.integers(0, 256, (1, height, width, 3), dtype=np.uint8),
                  "ir": rng.integers(0, 256, (1, height, width), dtype=np.uint8)}
    return {name: all_inputs[name] for name in GRAPH_INPUTS[graph]}


def tensorrt_segmenter(bundle: Path):
    """(segmenter, None) with fp16 engines built into the (temporary) bundle on
    this GPU, or (None, why not)."""
    try:
        import tensorrt  # noqa: F401
    except ImportError as exc:
        return None, f"TensorRT not installed ({exc})"
    from csk_ros.backends import load_bundle
    from engines.build import main as build_engines

    if build_engines(["--bundle", str(bundle), "--precision", "fp16"]) != 0:
        return None, "engine build failed (see the output above)"
    try:
        return load_bundle(bundle, backend="tensorrt"), None
    except Exception as exc:  # report, don't hide: the row says why it is missing
        return None, f"TensorRT backend failed: {exc}"


def bench_size(model, bundle: Path, height: int, width: int, threads: int, runs: int, warmup: int) -> list[dict]:
    import onnxruntime as ort

    rows = []
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
    trt_seg, trt_missing = tensorrt_segmenter(bundle)
    for graph in ("fused", "ir_only"):
        inputs = feeds(height, width, graph)
        deploy = DeployGraph(model, graph)
        t_inputs = tuple(torch.from_numpy(v) for v in inputs.values())
        with torch.inference_mode():
            eager = time_calls(lambda: deploy(*t_inputs), runs, warmup)
        rows.append(dict(graph=graph, size=f"{height}x{width}", backend="torch eager (CPU)", threads=threads, **eager))
        for provider in providers:
            session = ort.InferenceSession(str(bundle / f"{graph}.onnx"), options, providers=[provider])
            timing = time_calls(lambda: session.run(None, inputs), runs, warmup)
            name = "onnxruntime CPU" if provider == "CPUExecutionProvider" else "onnxruntime CUDA"
            rows.append(dict(graph=graph, size=f"{height}x{width}", backend=name, threads=threads, **timing))
        if trt_seg is None:
            rows.append(dict(graph=graph, size=f"{height}x{width}", backend="tensorrt", skipped=trt_missing[:200]))
            continue
        run = (lambda: trt_seg.fused(inputs["eo"][0], inputs["ir"][0])) if graph == "fused" else (
            lambda: trt_seg.ir_only(inputs["ir"][0]))
        rows.append(dict(graph=graph, size=f"{height}x{width}", backend="tensorrt fp16", threads="-",
                         **time_calls(run, runs, warmup)))
    if trt_seg is not None:
        trt_seg.close()
    return rows


def cost_rows(model, work: Path, height: int, width: int) -> dict:
    """ir_only.onnx vs a single-modality IR DeepLabV3 of the same backbone, both exported the same way.
    The baseline carries the CSK-Net IR-path weights: the exporter merges identical
    initializers, so a randomly initialised baseline would count differently."""
    baseline = ir_only_as_deeplabv3(model)
    export_graph(model, "ir_only", work / "csk_ir_only.onnx", height, width, 18)
    export_graph(baseline, "ir_only", work / "baseline_ir.onnx", height, width, 18)
    csk = onnx_cost(work / "csk_ir_only.onnx")
    base = onnx_cost(work / "baseline_ir.onnx")
    export_graph(model, "fused", work / "csk_fused.onnx", height, width, 18)
    fused = onnx_cost(work / "csk_fused.onnx")
    return {"csk_ir_only": csk, "deeplabv3_ir_baseline": base, "csk_fused": fused,
            "ir_only_equals_baseline": csk == base, "size": f"{height}x{width}"}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--out", default=str(RESULTS / "backends.json"))
    p.add_argument("overrides", nargs="*", help="without --checkpoint: config overrides of the random model, e.g. "
                   "model.depth=18 model.width=64 model.aspp_channels=256 'model.aspp_rates=[12,24,36]'")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        checkpoint = Path(args.checkpoint) if args.checkpoint else random_checkpoint(work / "random.pt",
                                                                                     args.overrides)
        model, ckpt = model_from_checkpoint(checkpoint)
        quiet = lambda *_: None  # noqa: E731
        native = export_bundle(checkpoint, work / "native", graphs=("fused", "ir_only"), log=quiet)
        vga = export_bundle(checkpoint, work / "vga", 480, 640, graphs=("fused", "ir_only"), log=quiet)
        from csk_ros.bundle import load_manifest

        h, w = load_manifest(native).height, load_manifest(native).width
        rows = bench_size(model, native, h, w, args.threads, args.runs, args.warmup)
        rows += bench_size(model, vga, 480, 640, args.threads, max(5, args.runs // 3), 2)
        costs = cost_rows(model, work, h, w)
    table = []
    for r in rows:
        if "skipped" in r:
            table.append([r["graph"], r["size"], r["backend"], "-", "n/a", "n/a", "n/a"])
            continue
        eager = next(e for e in rows if e["graph"] == r["graph"] and e["size"] == r["size"]
                     and e["backend"].startswith("torch"))
        r["speedup_vs_torch"] = eager["median_ms"] / r["median_ms"]
        table.append([r["graph"], r["size"], r["backend"], r["threads"], f"{r['median_ms']:.2f}",
                      f"{r['p95_ms']:.2f}", f"{r['speedup_vs_torch']:.2f}x"])
    model_desc = f"{ckpt['config']['model']['arch']} ResNet-{ckpt['config']['model']['depth']} " \
                 f"width {ckpt['config']['model']['width']}"
    print(f"\nLatency, {model_desc}, {args.threads} threads (median / p95 over the runs):\n")
    print_table(["graph", "size", "backend", "threads", "median ms", "p95 ms", "vs torch"], table)
    print(f"\nCost at {costs['size']} (read from the ONNX files):\n")
    print_table(["graph", "params", "MACs"], [
        ["CSK-Net ir_only.onnx", costs["csk_ir_only"]["params"], costs["csk_ir_only"]["macs"]],
        ["DeepLabV3 IR baseline", costs["deeplabv3_ir_baseline"]["params"], costs["deeplabv3_ir_baseline"]["macs"]],
        ["CSK-Net fused.onnx", costs["csk_fused"]["params"], costs["csk_fused"]["macs"]],
    ])
    print(f"\nir_only == baseline (params and MACs): {costs['ir_only_equals_baseline']}")
    out = write_json(Path(args.out), {"model": model_desc, "checkpoint": str(args.checkpoint or "random weights"),
                                      "threads": args.threads, "latency": rows, "cost": costs})
    print(f"wrote {out}")
    return 0 if costs["ir_only_equals_baseline"] else 1


if __name__ == "__main__":
    sys.exit(main())
