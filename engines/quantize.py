"""Static INT8 QDQ versions of a bundle's graphs, behind an accuracy gate.

python -m engines.quantize --bundle DIR [--config CFG] [--num-images N] [--method minmax|entropy|percentile]

For fused.onnx and ir_only.onnx it writes fused.int8.<sha>.onnx / ir_only.int8.<sha>.onnx
(explicit QuantizeLinear/DequantizeLinear): ONNX Runtime runs them with INT8
kernels on the CPU, TensorRT builds INT8 engines from them without a
calibrator. The camera contract is unchanged: uint8 EO/IR in, uint8 mask and
confidence out, pre- and post-processing inside the graph. What stays float:
the input cast / normalisation (everything before the first convolution), the
classifier convolution and everything after it (bilinear upsampling of the
logits, ArgMax, the max-softmax confidence), so the decision is taken on
float logits.

Quantiser: onnxruntime.quantization (quantize_static, QDQ format): int8
weights, symmetric per output channel; activations per tensor, calibrated on
training images prepared as the node prepares frames (engines/calibration.py).
Two activation encodings (--activations):
  uint8 (default, for ONNX Runtime on the CPU): asymmetric; the ReLU after a
      convolution folds into its output quantiser, so every conv runs as one
      QLinearConv (ResNet-18 IR-only at 480x640: 27 of 28 convs int8).
  int8-symmetric (for TensorRT): zero point 0, the only encoding TensorRT's
      explicit quantisation accepts. ONNX Runtime keeps each ReLU in float
      between dequantise/quantise and then fuses only 12 of 28 convs, so on
      the CPU it is barely faster than fp32. Biases stay float (TensorRT
      takes no int32 bias quantisation). The manifest records
      `tensorrt_compatible` so the engine builder can tell the two apart.
Before quantising, ONNX Runtime's basic graph optimisation folds each
BatchNorm into its convolution (the fused graph keeps per-modality BNs after
shared convolutions, which become two convolutions with their own weights).

Accuracy gate: each quantised graph is run on the validation split
(`train.eval_split`) next to its fp32 graph; if its mIoU drops by more than
--max-drop points (default 1.0), the command refuses and writes nothing.
Files and manifest are replaced only when every graph passed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import onnx

from csk_ros.bundle import (
    GRAPH_INPUTS,
    GRAPH_OUTPUTS,
    MANIFEST,
    BundleError,
    atomic_write_bytes,
    load_manifest,
    sha256_of,
    write_manifest,
)
from training.config import complete, load_config

from .calibration import FeedReader, ImageSet, load_images, ort_runner, session_miou

METHODS = ("minmax", "entropy", "percentile")
ACTIVATIONS = ("uint8", "int8-symmetric")
DEFAULT_METHOD = "minmax"
DEFAULT_IMAGES = 64
MAX_DROP = 1.0  # mIoU points, fused and IR-only
QUANTIZED_GRAPHS = ("fused", "ir_only")
CALIBRATION_STRIDE = 4  # frames per calibration chunk (bounds memory at 480x640)


class QuantizeError(RuntimeError):
    """Quantisation refused; the message says why and what to do."""


def float_nodes(model: onnx.ModelProto) -> tuple[list[str], dict[str, list[str]]]:
    """Node names to keep in float, and why: everything upstream of the first
    convolutions (uint8 cast, layout, normalisation, IR 1->3 expand) and the
    classifier head onwards (head conv(s), logit upsampling, ArgMax, confidence)."""
    nodes = list(model.graph.node)
    producer = {out: n for n in nodes for out in n.output}
    consumers: dict[str, list] = {}
    for n in nodes:
        for inp in n.input:
            consumers.setdefault(inp, []).append(n)

    # pre-processing: nodes with no Conv among their ancestors
    after_conv: dict[str, bool] = {}
    for n in nodes:  # ONNX graphs are topologically sorted
        after_conv[n.name] = n.op_type == "Conv" or any(
            inp in producer and after_conv[producer[inp].name] for inp in n.input)
    pre = [n for n in nodes if not after_conv[n.name]]

    # post-processing: walk back from ArgMax's input to the classifier convolution(s), then everything downstream
    argmax = [n for n in nodes if n.op_type == "ArgMax"]
    if len(argmax) != 1:
        raise QuantizeError(f"expected one ArgMax (the mask) in the graph, found {len(argmax)}")
    head, stack, seen = [], [argmax[0].input[0]], set()
    while stack:
        tensor = stack.pop()
        node = producer.get(tensor)
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        head.append(node)
        if node.op_type != "Conv":
            stack.extend(node.input)
    post, stack, downstream = [], [n.output[0] for n in head if n.op_type == "Conv"], set()
    while stack:
        for node in consumers.get(stack.pop(), []):
            if node.name not in downstream:
                downstream.add(node.name)
                post.append(node)
                stack.extend(node.output)
    groups = {"pre-processing": [n.name for n in pre],
              "head and post-processing": sorted({n.name for n in head} | {n.name for n in post})}
    excluded = sorted(set(groups["pre-processing"]) | set(groups["head and post-processing"]))
    return excluded, groups


def _describe(model: onnx.ModelProto, names: list[str]) -> list[str]:
    kinds = {n.name: n.op_type for n in model.graph.node}
    return [f"{kinds[name]}:{name}" for name in names if name in kinds]


def quantize_graph(fp32_path: Path, out_path: Path, images: ImageSet, graph: str, method: str = DEFAULT_METHOD,
                   activations: str = "uint8", work: Path | None = None) -> dict:
    """Write the QDQ version of `fp32_path` to `out_path`; returns what stayed float and the settings."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if method not in METHODS:
        raise QuantizeError(f"calibration method must be one of {METHODS}, got {method!r}")
    if activations not in ACTIVATIONS:
        raise QuantizeError(f"activations must be one of {ACTIVATIONS}, got {activations!r}")
    symmetric = activations == "int8-symmetric"
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        pre = Path(tmp) / "pre.onnx"
        # ORT basic optimisation (BN folded into convs, constants folded) + ONNX shape inference; the symbolic
        # shape pass is for transformers and fails on the static uint8 graphs.
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        model = onnx.load(str(pre))
        if restore_float_casts(model):
            onnx.save(model, str(pre))
        excluded, groups = float_nodes(model)
        reader = FeedReader(images, graph)
        stride = CALIBRATION_STRIDE if len(images) % CALIBRATION_STRIDE == 0 else 1
        quantize_static(
            str(pre), str(out_path), reader, quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=False,
            activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8, weight_type=QuantType.QInt8,
            nodes_to_exclude=excluded,
            calibrate_method={"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                              "percentile": CalibrationMethod.Percentile}[method],
            # TensorRT takes no int32 bias quantisation: the TensorRT flavour keeps biases float
            extra_options={"ActivationSymmetric": symmetric, "WeightSymmetric": True, "CalibStridedMinMax": stride,
                           "QuantizeBias": not symmetric},
        )
    quantized = onnx.load(str(out_path))
    onnx.checker.check_model(quantized)
    _check_contract(quantized, fp32_path, graph)
    _check_tensorrt_rules(quantized, graph, symmetric)
    return {"kept_float": [f"{why}: {node}" for why, names in groups.items() for node in _describe(model, names)],
            "qdq_nodes": sum(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in quantized.graph.node)}


def restore_float_casts(model: onnx.ModelProto) -> int:
    """Put back the float step in front of every Cast to uint8 from a non-float tensor; returns how many.

    engines/graphs.py exports the mask as ArgMax(int64) -> Cast(float) -> Cast(uint8) because TensorRT
    casts to UINT8 only from FLOAT / HALF, but quant_pre_process's ONNX Runtime optimisation folds the
    pair into one Cast(int64 -> uint8). Every other optimisation it makes (BatchNorm folding above all)
    is wanted, so the chain is re-asserted afterwards instead of skipping the optimisation."""
    typed = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type
             for v in [*typed.graph.input, *typed.graph.output, *typed.graph.value_info]}
    castable = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16}
    nodes, added = [], 0
    for node in model.graph.node:
        to = next((a.i for a in node.attribute if a.name == "to"), None) if node.op_type == "Cast" else None
        source = types.get(node.input[0]) if node.input else None
        if to == onnx.TensorProto.UINT8 and source is not None and source not in castable:
            as_float = f"{node.input[0]}_as_float"
            nodes.append(onnx.helper.make_node("Cast", [node.input[0]], [as_float], to=onnx.TensorProto.FLOAT,
                                               name=f"{node.name or 'cast'}_via_float"))
            node.input[0] = as_float
            added += 1
        nodes.append(node)
    if added:
        del model.graph.node[:]
        model.graph.node.extend(nodes)
    return added


def _check_tensorrt_rules(model: onnx.ModelProto, graph: str, symmetric: bool) -> None:
    """Refuse a quantised graph that breaks TensorRT's UINT8 rules (the check engines.build runs). The
    TensorRT flavour must pass both rules; the ONNX Runtime flavour has uint8 activations by design and
    never goes to TensorRT, but keeps the float -> uint8 mask cast like its fp32 graph."""
    from csk_ros.backends.engine_check import uint8_intermediate_problems

    problems = uint8_intermediate_problems(model, casts_only=not symmetric) or []
    if problems:
        raise QuantizeError(f"{graph}: the quantised graph breaks TensorRT's UINT8 rules (a defect in "
                            "engines.quantize, not in the bundle): " + "; ".join(problems))


def _check_contract(model: onnx.ModelProto, fp32_path: Path, graph: str) -> None:
    """The QDQ graph keeps the camera contract: same uint8 inputs and outputs, same shapes."""
    reference = onnx.load(str(fp32_path), load_external_data=False)

    def io(m, which):
        return [(v.name, v.type.tensor_type.elem_type, [d.dim_value for d in v.type.tensor_type.shape.dim])
                for v in getattr(m.graph, which)]

    for which in ("input", "output"):
        if io(model, which) != io(reference, which):
            raise QuantizeError(f"{graph}: the quantised graph's {which}s {io(model, which)} differ from the fp32 "
                                f"graph's {io(reference, which)}")
    if tuple(v.name for v in model.graph.input) != GRAPH_INPUTS[graph] or \
            tuple(v.name for v in model.graph.output) != GRAPH_OUTPUTS:
        raise QuantizeError(f"{graph}: graph I/O does not follow the bundle contract")


def data_config(bundle, config: str | None) -> tuple[dict, dict]:
    """(data section, train section) for calibration/validation: --config, else the training config in the manifest."""
    if config:
        cfg = load_config(config)
    else:
        stored = (bundle.manifest.get("training") or {}).get("config")
        if not isinstance(stored, dict) or "data" not in stored:
            raise QuantizeError(f"{bundle.root / MANIFEST} records no training config; pass --config with the "
                                "dataset to calibrate on")
        cfg = complete(stored)
    return cfg["data"], cfg["train"]


def image_sets(data_cfg: dict, train_cfg: dict, height: int, width: int, num_images: int,
               val_images: int | None) -> tuple[ImageSet, ImageSet]:
    """Calibration frames from the training split, validation frames from the model-selection split."""
    from training.data import build_dataset
    from training.train import holdout_split

    split = str(train_cfg.get("eval_split", "val"))
    if split.startswith("test"):
        raise QuantizeError(f"the model-selection split is {split!r}; the gate validates on val or holdout, never "
                            "on a test split (pass --config with train.eval_split=val or holdout)")
    calib_indices = None
    if split == "holdout":
        n = len(build_dataset(data_cfg, "train", train=False))
        calib_indices, held = holdout_split(n, train_cfg["holdout_fraction"])
        val = load_images(data_cfg, "train", height, width, val_images, indices=held)
        val.split = "holdout"
    else:
        val = load_images(data_cfg, split, height, width, val_images)
    calib = load_images(data_cfg, "train", height, width, num_images, indices=calib_indices)
    return calib, val


def quantize_and_gate(bundle, graph: str, staging: Path, calib, val, data_cfg: dict, method: str,
                      activations: str, max_drop: float, num_classes: int, log) -> tuple[Path, dict]:
    """One graph: quantise it into `staging`, score fp32 and int8 on the validation frames, refuse a drop
    above `max_drop`; returns the staged file and its manifest record."""
    import onnxruntime

    source = bundle.graphs[graph]
    out = staging / f"{graph}.int8.onnx"
    info = quantize_graph(source.path, out, calib, graph, method, activations, work=staging)
    fp32 = session_miou(ort_runner(source.path), graph, val, num_classes)
    int8 = session_miou(ort_runner(out), graph, val, num_classes)
    drop = round(100.0 * (fp32["miou"] - int8["miou"]), 6)  # so that exactly 1.0 point is 1.0, not 1.0000001
    agreement = float((fp32["masks"] == int8["masks"]).mean())
    log(f"  {graph}: validation mIoU fp32 {100 * fp32['miou']:.2f}, int8 {100 * int8['miou']:.2f} "
        f"(drop {drop:+.2f} points, limit {max_drop:.2f}); masks agree on {100 * agreement:.2f}% of pixels")
    if not drop <= max_drop:  # also refuses NaN
        raise QuantizeError(
            f"{graph}: INT8 validation mIoU {100 * int8['miou']:.2f} is {drop:.2f} points below fp32 "
            f"{100 * fp32['miou']:.2f} (limit {max_drop:.2f}); not written. Try another --method "
            f"(entropy, percentile) or more --num-images, or deploy this graph in fp32")
    digest = sha256_of(out)
    record = {
        "file": f"{graph}.int8.{digest[:12]}.onnx", "sha256": digest, "inputs": list(source.inputs),
        "outputs": list(source.outputs), "precision": "int8", "source_sha256": source.sha256,
        "calibration": {"dataset": data_cfg.get("name"), "split": calib.split, "num_images": len(calib),
                        "method": method, "size": [bundle.height, bundle.width],
                        "preprocessing": "node's: uint8 frames, bilinear resize to the bundle size",
                        "activations": ("int8, symmetric per tensor (zero point 0)" if activations ==
                                        "int8-symmetric" else "uint8, asymmetric per tensor"),
                        "weights": "int8, symmetric per output channel"},
        "tensorrt_compatible": activations == "int8-symmetric",
        "kept_float": info["kept_float"],
        "quantizer": {"name": "onnxruntime.quantization.quantize_static", "format": "QDQ",
                      "onnxruntime": onnxruntime.__version__, "qdq_nodes": info["qdq_nodes"]},
        "validation": {"split": val.split, "num_images": len(val), "miou_fp32": fp32["miou"],
                       "miou_int8": int8["miou"], "drop_points": drop, "max_drop_points": max_drop,
                       "mask_agreement": agreement},
    }
    return out, record


def publish_quantized(bundle, staged: dict, records: dict) -> None:
    """Every graph passed: new files under new names (content-addressed), then the manifest, then the old
    files go, so a node starting at any moment sees a manifest whose files are all there and match."""
    for graph, path in staged.items():
        atomic_write_bytes(bundle.root / records[graph]["file"], path.read_bytes())
    manifest = json.loads((bundle.root / MANIFEST).read_text())
    previous = manifest.get("quantized") or {}
    manifest["quantized"] = dict(previous, **records)
    write_manifest(bundle.root, manifest)
    load_manifest(bundle.root)  # the reader accepts what the writer wrote
    for graph, record in records.items():
        old = (previous.get(graph) or {}).get("file")
        if old and old != record["file"]:
            (bundle.root / old).unlink(missing_ok=True)


def quantize_bundle(bundle_dir, config: str | None = None, num_images: int = DEFAULT_IMAGES,
                    method: str = DEFAULT_METHOD, max_drop: float = MAX_DROP, val_images: int | None = None,
                    graphs: tuple[str, ...] | None = None, activations: str = "uint8", log=print) -> dict:
    """Quantise the bundle's fused and ir_only graphs; returns the manifest's new "quantized" records.

    Raises QuantizeError (nothing written) when a graph fails the accuracy gate."""
    if num_images <= 0:
        raise QuantizeError(f"--num-images must be positive, got {num_images}")
    if not max_drop <= MAX_DROP:
        raise QuantizeError(f"--max-drop {max_drop} is above the accuracy gate's {MAX_DROP} mIoU points: a "
                            "stricter limit is allowed, a looser one is not")
    try:
        bundle = load_manifest(bundle_dir)
    except BundleError as exc:
        raise QuantizeError(str(exc)) from exc
    todo = [g for g in (graphs or QUANTIZED_GRAPHS) if g in bundle.graphs]
    unknown = sorted(set(graphs or ()) - set(QUANTIZED_GRAPHS))
    if unknown or not todo:
        raise QuantizeError(f"nothing to quantise: graphs {sorted(graphs or QUANTIZED_GRAPHS)} vs the bundle's "
                            f"{sorted(bundle.graphs)} (quantisable: {list(QUANTIZED_GRAPHS)})")
    data_cfg, train_cfg = data_config(bundle, config)
    calib, val = image_sets(data_cfg, train_cfg, bundle.height, bundle.width, num_images, val_images)
    num_classes = len(bundle.class_names)
    log(f"calibrating on {len(calib)} '{calib.split}' frames, validating on {len(val)} '{val.split}' frames "
        f"({data_cfg.get('name')}, {bundle.height}x{bundle.width}, {method}, {activations} activations)")
    records, staged = {}, {}
    staging = Path(tempfile.mkdtemp(prefix=".quantize.", dir=bundle.root))
    try:
        for graph in todo:
            staged[graph], records[graph] = quantize_and_gate(bundle, graph, staging, calib, val, data_cfg, method,
                                                              activations, max_drop, num_classes, log)
        publish_quantized(bundle, staged, records)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return records


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", required=True, help="model bundle directory (from python -m engines.export)")
    p.add_argument("--config", help="training config whose data section names the calibration/validation data "
                   "(default: the config recorded in the bundle's manifest)")
    p.add_argument("--num-images", type=int, default=DEFAULT_IMAGES, help="calibration frames (training split)")
    p.add_argument("--val-images", type=int, help="validation frames for the gate (default: the whole split)")
    p.add_argument("--method", choices=METHODS, default=DEFAULT_METHOD, help="activation range calibration")
    p.add_argument("--max-drop", type=float, default=MAX_DROP, help="largest validation mIoU drop, points")
    p.add_argument("--graphs", help="comma-separated subset of fused,ir_only (default: both where present)")
    p.add_argument("--activations", choices=ACTIVATIONS, default="uint8",
                   help="uint8: fastest on ONNX Runtime CPU (default); int8-symmetric: for TensorRT INT8 engines")
    args = p.parse_args(argv)
    try:
        records = quantize_bundle(args.bundle, args.config, args.num_images, args.method, args.max_drop,
                                  args.val_images, tuple(args.graphs.split(",")) if args.graphs else None,
                                  args.activations)
    except (QuantizeError, OSError, ValueError) as exc:  # OSError: missing data, read-only bundle
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("quantised: " + ", ".join(f"{g} -> {r['file']}" for g, r in records.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
