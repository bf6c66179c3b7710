"""Latency of the deploy graphs: torch eager vs ONNX Runtime (and TensorRT /
ORT-CUDA where present), at the bundle size and at 480x640, plus the
parameters and MACs of ir_only.onnx next to a single-modality DeepLabV3.

python benchmarks/backends.py [--checkpoint CKPT] [--threads N] [--runs N] [--out JSON]
python benchmarks/backends.py --int8 [--demo-checkpoint CKPT] [--edge-checkpoint CKPT]
python benchmarks/backends.py --costs

Without --checkpoint it benchmarks the synthetic demo architecture with
random weights (latency does not depend on the weights). Prints a table and
writes JSON (default benchmarks/results/backends.json).

--int8: torch eager fp32, ONNX Runtime fp32 and ONNX Runtime INT8 (the
bundle's QDQ graphs from engines.quantize, through load_bundle as the node
runs them) side by side, at the bundle size and at 480x640, for the trained
demo model and the edge configuration trained briefly on the synthetic set;
each row with median / p95 ms, speedup vs torch and vs ORT fp32, and mIoU on
the synthetic test split (frames resized to the row's size as the node
resizes camera frames; labels nearest). Missing checkpoints are trained
first (`training.demo` pipeline; the edge config for --edge-steps steps).
Writes benchmarks/results/backends_int8.json.

--costs: params and MACs of fused / IR-only graphs of the paper-like
ResNet-18 and the edge configuration at 480x640 and 512x640, and the IR-only
graph against a single-modality DeepLabV3, fp32 and INT8 QDQ.
Writes benchmarks/results/backends_costs.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import RESULTS, print_table, time_calls, time_interleaved, write_json  # noqa: E402
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


EDGE_CONFIG = CONFIG.with_name("edge.yaml")
PAPER_R18 = ["model.depth=18", "model.width=64", "model.output_stride=8", "model.aspp_channels=256",
             "model.aspp_rates=[12,24,36]"]


def edge_overrides() -> list[str]:
    """The edge configuration's model on the synthetic data (no ImageNet download)."""
    model = load_config(EDGE_CONFIG)["model"]
    keys = ("depth", "width", "output_stride", "aspp_channels", "aspp_rates")
    return [f"model.{k}={model[k]}".replace(" ", "") for k in keys]


def train_missing(name: str, checkpoint: Path | None, work: Path, edge_steps: int) -> Path:
    """The checkpoint to benchmark; trains it when absent (demo: teacher + CSK-Net as `make demo`;
    edge: the edge model on the synthetic set, no teacher, `edge_steps` steps)."""
    if checkpoint and checkpoint.is_file():
        return checkpoint
    out = checkpoint.parent if checkpoint else work / name
    print(f"{name}: no checkpoint at {checkpoint}; training one under {out} ...", flush=True)
    if name == "demo":
        from training.demo import train_stages

        return train_stages(out.parent if out.name == "csk" else out, [], 8, baseline=False)["csk"]
    from training.train import train

    cfg = load_config(CONFIG, edge_overrides() + [
        f"train.max_steps={edge_steps}", f"train.eval_every={max(1, edge_steps // 3)}", "loss.kd_feature=0",
        "loss.kd_logit=0", "loss.kd_feature_ir_only=0", "loss.kd_logit_ir_only=0"])
    train(cfg, out, "csk")
    return out / "best.pt"


def int8_rows(name: str, checkpoint: Path, work: Path, height: int, width: int, threads: int, runs: int,
              warmup: int, miou_images: int | None, calib_images: int, val_images: int | None) -> tuple[list, dict]:
    """torch eager fp32 / ORT fp32 / ORT int8 rows for both graphs at one size, and the gate's record."""
    from csk_ros.backends import load_bundle
    from engines.calibration import load_images, session_miou
    from engines.quantize import QuantizeError, quantize_bundle

    model, ckpt = model_from_checkpoint(checkpoint)
    quiet = lambda *_: None  # noqa: E731
    bundle = export_bundle(checkpoint, work / f"{name}_{height}x{width}", height, width, graphs=("fused", "ir_only"),
                           force=True, log=quiet)
    try:
        gate = quantize_bundle(bundle, num_images=calib_images, val_images=val_images, log=print)
    except QuantizeError as exc:
        gate = {"refused": str(exc)}
        print(f"  {name} {height}x{width}: quantisation refused: {exc}")
    test = load_images(ckpt["config"]["data"], "test", height, width, miou_images)
    classes = ckpt["config"]["model"]["num_classes"]
    backends = {"ORT fp32": load_bundle(bundle, backend="onnxruntime", intra_op_threads=threads,
                                        inter_op_threads=1)}
    if "refused" not in gate:
        backends["ORT int8"] = load_bundle(bundle, backend="onnxruntime", intra_op_threads=threads,
                                           inter_op_threads=1, precision="int8")
    rows = []
    for graph in ("fused", "ir_only"):
        deploy = DeployGraph(model, graph)

        def torch_run(feeds, deploy=deploy):
            with torch.inference_mode():
                return [t.numpy() for t in deploy(*(torch.from_numpy(v) for v in feeds.values()))]

        runners = {"torch eager fp32": torch_run}
        for label, seg in backends.items():
            runners[label] = lambda feeds, seg=seg, graph=graph: seg.runner.run(graph, feeds)
        base = dict(model=name, size=f"{height}x{width}", graph=graph, threads=threads)
        feeds = test.feeds(graph, 0)
        timings = time_interleaved({label: (lambda run=run: run(feeds)) for label, run in runners.items()},
                                   runs, warmup)
        for label, run in runners.items():
            timing = timings[label]
            quality = session_miou(run, graph, test, classes)
            rows.append(dict(base, backend=label, miou=quality["miou"], miou_images=len(test), **timing))
            print(f"  {name} {height}x{width} {graph:7s} {label:16s} {timing['median_ms']:8.1f} ms  "
                  f"mIoU {100 * quality['miou']:.1f}", flush=True)
    for seg in backends.values():
        seg.close()
    return rows, gate


def add_speedups(rows: list[dict]) -> None:
    for r in rows:
        same = [e for e in rows if (e["model"], e["size"], e["graph"]) == (r["model"], r["size"], r["graph"])]
        ref = {e["backend"]: e["median_ms"] for e in same}
        r["speedup_vs_torch"] = ref["torch eager fp32"] / r["median_ms"]
        r["speedup_vs_ort_fp32"] = ref["ORT fp32"] / r["median_ms"]
        r["miou_drop_vs_fp32_points"] = 100 * (next(e["miou"] for e in same if e["backend"] == "ORT fp32")
                                               - r["miou"])


def run_int8(args) -> int:
    import os

    load = os.getloadavg()
    rows, gates = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        checkpoints = {"demo": train_missing("demo", Path(args.demo_checkpoint), work, args.edge_steps),
                       "edge": train_missing("edge", Path(args.edge_checkpoint), work, args.edge_steps)}
        for name, checkpoint in checkpoints.items():
            data = load_config_from(checkpoint)["data"]
            native = tuple(data.get("size") or (96, 128))
            for (h, w), runs, warmup, images in ((native, args.runs, args.warmup, None),
                                                 ((480, 640), max(15, args.runs // 2), 2, args.vga_images)):
                print(f"{name} at {h}x{w} ...", flush=True)
                r, gate = int8_rows(name, checkpoint, work, h, w, args.threads, runs, warmup, images,
                                    args.calib_images, None if (h, w) == native else args.vga_images)
                rows += r
                gates[f"{name} {h}x{w}"] = gate
    add_speedups(rows)
    end_load = os.getloadavg()
    print(f"\nINT8 vs fp32, {args.threads} threads (median / p95 ms; mIoU on the synthetic test split); "
          f"load average {load[0]:.2f} at start, {end_load[0]:.2f} at end:\n")
    print_table(["model", "size", "graph", "backend", "median ms", "p95 ms", "vs torch", "vs ORT fp32", "mIoU",
                 "frames"],
                [[r["model"], r["size"], r["graph"], r["backend"], f"{r['median_ms']:.1f}", f"{r['p95_ms']:.1f}",
                  f"{r['speedup_vs_torch']:.2f}x", f"{r['speedup_vs_ort_fp32']:.2f}x", f"{100 * r['miou']:.1f}",
                  r["miou_images"]] for r in rows])
    out = write_json(Path(args.out).with_name("backends_int8.json") if args.out == DEFAULT_OUT else Path(args.out),
                     {"threads": args.threads, "load_average_start": load, "load_average_end": end_load,
                      "checkpoints": {k: str(v) for k, v in checkpoints.items()}, "rows": rows, "quantize": gates})
    print(f"wrote {out}")
    return 0


def load_config_from(checkpoint: Path) -> dict:
    from training.checkpoint import load_checkpoint

    return load_checkpoint(checkpoint)["config"]


def graph_costs(overrides: list[str], work: Path, height: int, width: int, quantized: bool) -> dict:
    """fp32 (and optionally INT8 QDQ) params / MACs of fused, ir_only and the IR DeepLabV3 baseline."""
    from engines.calibration import ImageSet
    from engines.quantize import quantize_graph

    cfg = load_config(CONFIG, list(overrides))
    torch.manual_seed(0)
    model = build_model(cfg["model"]).eval()
    baseline = ir_only_as_deeplabv3(model)
    paths = {"fused": (model, "fused"), "ir_only": (model, "ir_only"), "ir_baseline": (baseline, "ir_only")}
    costs = {}
    rng = np.random.default_rng(0)
    frames = ImageSet("random", [0, 1], rng.integers(0, 256, (2, height, width, 3), dtype=np.uint8),
                      rng.integers(0, 256, (2, height, width), dtype=np.uint8), np.zeros((2, height, width), np.int64))
    for key, (net, mode) in paths.items():
        path = work / f"{key}_{height}x{width}.onnx"
        export_graph(net, mode, path, height, width, 18)
        costs[key] = onnx_cost(path)
        if quantized:  # the cost check only: calibration data does not change params or MACs
            qpath = work / f"{key}_{height}x{width}.int8.onnx"
            quantize_graph(path, qpath, frames, mode)
            costs[key + " int8"] = onnx_cost(qpath)
        print(f"  {height}x{width} {key}: {costs[key]}", flush=True)
    return costs


def run_costs(args) -> int:
    configs = {"paper-like ResNet-18 (OS 8, ASPP 256 @ 12/24/36)": PAPER_R18,
               "edge (ResNet-18, OS 16, ASPP 128 @ 6/12/18)": edge_overrides()}
    results, table = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        for name, overrides in configs.items():
            for h, w in ((480, 640), (512, 640)):
                print(f"{name} at {h}x{w} ...", flush=True)
                c = graph_costs(overrides, Path(tmp), h, w, quantized=(h, w) == (480, 640))
                results[f"{name} {h}x{w}"] = c
                for key in ("fused", "ir_only", "ir_baseline"):
                    table.append([name, f"{h}x{w}", key, f"{c[key]['params'] / 1e6:.2f} M",
                                  f"{c[key]['macs'] / 1e9:.2f} G"])
                equal = c["ir_only"] == c["ir_baseline"]
                equal_q = c.get("ir_only int8") == c.get("ir_baseline int8") if "ir_only int8" in c else None
                results[f"{name} {h}x{w}"]["ir_only_equals_baseline"] = {"fp32": equal, "int8": equal_q}
    print("\nParams and MACs per graph (read from the ONNX files; MACs = Conv/Gemm multiply-accumulates):\n")
    print_table(["configuration", "size", "graph", "params", "MACs"], table)
    ok = all(v["ir_only_equals_baseline"]["fp32"] and v["ir_only_equals_baseline"]["int8"] in (True, None)
             for v in results.values())
    print(f"\nir_only == single-modality DeepLabV3 (fp32 and INT8 QDQ): {ok}")
    out = write_json(Path(args.out).with_name("backends_costs.json") if args.out == DEFAULT_OUT else Path(args.out),
                     {"costs": results})
    print(f"wrote {out}")
    return 0 if ok else 1


DEFAULT_OUT = str(RESULTS / "backends.json")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--int8", action="store_true", help="torch / ORT fp32 / ORT INT8 rows with mIoU (see above)")
    p.add_argument("--costs", action="store_true", help="params / MACs of the paper-like and edge configurations")
    p.add_argument("--demo-checkpoint", default="runs/demo/csk/best.pt", help="--int8: the demo's CSK-Net")
    p.add_argument("--edge-checkpoint", default="runs/edge_synth/best.pt",
                   help="--int8: the edge configuration trained on the synthetic set")
    p.add_argument("--edge-steps", type=int, default=300, help="--int8: training steps when the edge one is missing")
    p.add_argument("--calib-images", type=int, default=64, help="--int8: calibration frames")
    p.add_argument("--vga-images", type=int, default=16,
                   help="--int8: test (and gate validation) frames at 480x640; all 64 at the bundle size")
    p.add_argument("--checkpoint")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--out", default=DEFAULT_OUT)
    p.add_argument("overrides", nargs="*", help="without --checkpoint: config overrides of the random model, e.g. "
                   "model.depth=18 model.width=64 model.aspp_channels=256 'model.aspp_rates=[12,24,36]'")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.int8:
        return run_int8(args)
    if args.costs:
        return run_costs(args)
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
