"""Checkpoint -> ONNX model bundle.

python -m engines.export --checkpoint CKPT --out engines/NAME [--height H --width W] [--opset N] [--force]

Writes fused.onnx / ir_only.onnx / eo_only.onnx (each with pre- and post-
processing inside, see engines/graphs.py) and manifest.json. Every graph is
checked with onnx.checker and run in ONNX Runtime against the torch model;
the export fails, leaving no bundle behind, if masks disagree on more than
--max-disagreement of pixels (DESIGN: the legacy exporter once produced
silently wrong masks, so this check is never skipped).
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import torch

from csk_ros.bundle import FORMAT_VERSION, GRAPH_INPUTS, GRAPH_OUTPUTS, MANIFEST, load_manifest, sha256_of, write_manifest
from csk_ros.imaging.thermal import ThermalScaling
from training.checkpoint import model_from_checkpoint
from training.data import dataset_classes

from .graphs import DeployGraph

DEFAULT_OPSET = 18
MAX_DISAGREEMENT = 1e-3  # fraction of mask pixels


class ExportError(RuntimeError):
    pass


def default_input_size(data_cfg: dict) -> tuple[int, int] | None:
    for key in ("eval_size", "size"):
        if data_cfg.get(key):
            return tuple(data_cfg[key])
    crop = (data_cfg.get("augment") or {}).get("crop")
    return tuple(crop) if crop else None


def sample_inputs(height: int, width: int, count: int = 3, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Parity inputs: smooth random scenes (blocks, like real images, so the
    argmax is not decided by noise) plus pure noise."""
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(count):
        if i % 2 == 0:
            blocks_eo = rng.integers(0, 256, (max(1, height // 8), max(1, width // 8), 3), dtype=np.uint8)
            blocks_ir = rng.integers(0, 256, (max(1, height // 8), max(1, width // 8)), dtype=np.uint8)
            eo = np.kron(blocks_eo, np.ones((8, 8, 1), np.uint8))[:height, :width]
            ir = np.kron(blocks_ir, np.ones((8, 8), np.uint8))[:height, :width]
            eo = np.pad(eo, ((0, height - eo.shape[0]), (0, width - eo.shape[1]), (0, 0)), mode="edge")
            ir = np.pad(ir, ((0, height - ir.shape[0]), (0, width - ir.shape[1])), mode="edge")
        else:
            eo = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            ir = rng.integers(0, 256, (height, width), dtype=np.uint8)
        samples.append({"eo": eo[None].copy(), "ir": ir[None].copy()})
    return samples


def export_graph(model: torch.nn.Module, mode: str, path: Path, height: int, width: int, opset: int) -> None:
    graph = DeployGraph(model, mode)
    example = {"eo": torch.zeros(1, height, width, 3, dtype=torch.uint8),
               "ir": torch.zeros(1, height, width, dtype=torch.uint8)}
    args = tuple(example[name] for name in GRAPH_INPUTS[mode])
    program = torch.onnx.export(graph, args, dynamo=True, opset_version=opset, input_names=list(GRAPH_INPUTS[mode]),
                                output_names=list(GRAPH_OUTPUTS), verbose=False)
    program.save(str(path))
    onnx.checker.check_model(str(path), full_check=True)


def parity(model: torch.nn.Module, mode: str, path: Path, samples) -> dict:
    """Fraction of mask pixels where ONNX Runtime and torch disagree, and the
    largest confidence difference."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    graph = DeployGraph(model, mode)
    disagree, total, conf_diff = 0, 0, 0
    for sample in samples:
        feeds = {name: sample[name] for name in GRAPH_INPUTS[mode]}
        mask, conf = session.run(None, feeds)
        with torch.no_grad():
            t_mask, t_conf = graph(*(torch.from_numpy(feeds[n]) for n in GRAPH_INPUTS[mode]))
        disagree += int((mask != t_mask.numpy()).sum())
        total += mask.size
        conf_diff = max(conf_diff, int(np.abs(conf.astype(np.int16) - t_conf.numpy().astype(np.int16)).max()))
    return {"mask_disagreement": disagree / total, "max_confidence_diff": conf_diff, "samples": len(samples)}


def build_manifest(ckpt: dict, height: int, width: int, graphs: dict, opset: int, name: str,
                   checkpoint_sha256: str) -> dict:
    cfg = ckpt["config"]
    class_names, palette = dataset_classes(cfg["data"])
    return {
        "format_version": FORMAT_VERSION,
        "name": name,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "class_names": list(class_names),
        "palette": palette,
        "input": {
            "height": height,
            "width": width,
            "eo": {"name": "eo", "encoding": "rgb8", "dtype": "uint8", "layout": "NHWC", "shape": [1, height, width, 3]},
            "ir": {"name": "ir", "encoding": "mono8", "dtype": "uint8", "layout": "NHW", "shape": [1, height, width]},
        },
        "outputs": {
            "mask": {"dtype": "uint8", "shape": [1, height, width], "meaning": "class id (argmax)"},
            "confidence": {"dtype": "uint8", "shape": [1, height, width], "meaning": "round(255 * max softmax)"},
        },
        "normalization": cfg["model"]["normalization"],
        "thermal_scaling": ThermalScaling.from_dict(cfg["data"].get("thermal")).to_dict(),
        "graphs": graphs,
        "engines": [],
        "model": {k: cfg["model"][k] for k in ("arch", "depth", "width", "output_stride", "num_classes", "exchange", "gsu")},
        "checkpoint": {"sha256": checkpoint_sha256},
        "training": {"stage": ckpt.get("stage"), "step": ckpt.get("step"), "metrics": ckpt.get("metrics") or {},
                     "config": cfg},
        "exporter": {"torch": torch.__version__, "onnx": onnx.__version__, "opset": opset, "dynamo": True},
    }


def export_bundle(checkpoint, out, height: int | None = None, width: int | None = None, opset: int = DEFAULT_OPSET,
                  max_disagreement: float = MAX_DISAGREEMENT, force: bool = False, graphs: tuple | None = None,
                  log=print) -> Path:
    """Export the graphs the checkpoint's model supports (or the `graphs`
    asked for) into a bundle at `out`.

    Built in a temp dir beside `out` and moved into place only when every
    graph passed its checks, so a failed export leaves no half bundle.
    """
    out = Path(out).resolve()
    if out.exists() and any(out.iterdir()):
        if not (out / MANIFEST).is_file():
            raise ExportError(f"{out} exists, is not empty and is not a model bundle; choose another --out")
        if not force:
            raise ExportError(f"{out} exists and is not empty; pass --force to replace the bundle")
    unknown = sorted(set(graphs or ()) - set(GRAPH_INPUTS))
    if unknown:
        raise ExportError(f"unknown graph(s) {unknown}; choose from {sorted(GRAPH_INPUTS)}")
    if graphs and "ir_only" not in graphs:
        raise ExportError("the graphs must include ir_only: every bundle needs the IR-only fallback")
    model, ckpt = model_from_checkpoint(checkpoint)
    modes = [m for m in ("fused", "ir_only", "eo_only") if m in model.supported_modes and (not graphs or m in graphs)]
    if "ir_only" not in modes:
        raise ExportError(f"checkpoint {checkpoint} ({ckpt['config']['model']['arch']}) has no IR-only mode; "
                          "a bundle needs one for the fallback (export a csknet or an IR deeplabv3)")
    if height is None or width is None:
        size = default_input_size(ckpt["config"]["data"])
        if size is None:
            raise ExportError("the checkpoint's data config names no input size; pass --height and --width")
        height, width = height or size[0], width or size[1]
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        samples = sample_inputs(height, width)
        records = {}
        for mode in modes:
            path = staging / f"{mode}.onnx"
            log(f"exporting {mode} graph at {height}x{width} (opset {opset}) ...")
            export_graph(model, mode, path, height, width, opset)
            check = parity(model, mode, path, samples)
            log(f"  parity vs torch: {100 * check['mask_disagreement']:.4f}% mask pixels differ, "
                f"max confidence diff {check['max_confidence_diff']}")
            if check["mask_disagreement"] > max_disagreement:
                raise ExportError(f"{mode}.onnx disagrees with torch on {100 * check['mask_disagreement']:.3f}% of "
                                  f"mask pixels (limit {100 * max_disagreement:.3f}%); the export is wrong, not shipped")
            records[mode] = {"file": path.name, "sha256": sha256_of(path), "inputs": list(GRAPH_INPUTS[mode]),
                            "outputs": list(GRAPH_OUTPUTS), "opset": opset, "parity": check}
        write_manifest(staging, build_manifest(ckpt, height, width, records, opset, out.name, sha256_of(checkpoint)))
        load_manifest(staging)  # the reader accepts what the writer wrote
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True, help="bundle directory, e.g. engines/synthetic")
    p.add_argument("--height", type=int)
    p.add_argument("--width", type=int)
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    p.add_argument("--max-disagreement", type=float, default=MAX_DISAGREEMENT,
                   help="largest fraction of mask pixels allowed to differ from torch (default 0.001)")
    p.add_argument("--force", action="store_true", help="replace an existing bundle at --out")
    p.add_argument("--graphs", help="comma-separated subset of fused,ir_only,eo_only (default: all the model has)")
    args = p.parse_args(argv)
    if args.opset < 18:
        print("error: --opset must be >= 18 (the dynamo exporter's minimum we validated)", file=sys.stderr)
        return 2
    try:
        out = export_bundle(args.checkpoint, args.out, args.height, args.width, args.opset, args.max_disagreement,
                            args.force, tuple(args.graphs.split(",")) if args.graphs else None)
    except (ExportError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"bundle written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
