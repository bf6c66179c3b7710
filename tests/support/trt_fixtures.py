"""Small valid model bundles and graphs for the engine-building tests (no TensorRT, no torch)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from csk_ros.bundle import load_manifest, sha256_of

REPO = Path(__file__).resolve().parents[2]
H, W = 8, 12


def u8_info(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.UINT8, shape)


def save_model(model, path: Path) -> None:
    model.ir_version = 10  # readable by every onnxruntime >= 1.20
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def identity_graph(graph: str, h: int, w: int) -> onnx.ModelProto:
    """The contract's I/O (uint8 in, mask + confidence uint8 out) with Identity ops."""
    inputs = [u8_info("eo", [1, h, w, 3])] if graph in ("fused", "eo_only") else []
    inputs += [u8_info("ir", [1, h, w])] if graph in ("fused", "ir_only") else []
    if graph == "eo_only":
        nodes = [helper.make_node("ReduceMax", ["eo", "axis"], [out], keepdims=0, name=f"max_{out}")
                 for out in ("mask", "confidence")]
        inits = [numpy_helper.from_array(np.array([3], np.int64), "axis")]
    else:
        nodes = [helper.make_node("Identity", ["ir"], ["mask"], name="id_mask"),
                 helper.make_node("Identity", ["ir"], ["confidence"], name="id_conf")]
        inits = []
    g = helper.make_graph(nodes, graph, inputs, [u8_info("mask", [1, h, w]), u8_info("confidence", [1, h, w])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])


def float_graph(graph: str, h: int, w: int, classes: int = 4, seed: int = 0) -> onnx.ModelProto:
    """A miniature of engines/graphs.py done the TensorRT-friendly way: Cast uint8 to
    float FIRST, then layout, a 1x1 conv per modality, argmax mask and max-softmax
    confidence (ReduceMax/Sub/Exp/ReduceSum/Reciprocal/Mul/Round/Clip/Cast)."""
    rng = np.random.default_rng(seed)
    f32 = TensorProto.FLOAT
    nodes, inits, branches = [], [], []
    inputs = []

    def init(name, array):
        inits.append(numpy_helper.from_array(np.asarray(array), name))

    if graph in ("fused", "eo_only"):
        inputs.append(u8_info("eo", [1, h, w, 3]))
        nodes += [helper.make_node("Cast", ["eo"], ["eo_f"], to=f32, name="cast_eo"),
                  helper.make_node("Transpose", ["eo_f"], ["eo_nchw"], perm=[0, 3, 1, 2], name="nhwc_to_nchw"),
                  helper.make_node("Conv", ["eo_nchw", "w_eo", "b_eo"], ["logit_eo"], name="conv_eo")]
        init("w_eo", rng.normal(0, 0.02, (classes, 3, 1, 1)).astype(np.float32))
        init("b_eo", rng.normal(0, 0.5, classes).astype(np.float32))
        branches.append("logit_eo")
    if graph in ("fused", "ir_only"):
        inputs.append(u8_info("ir", [1, h, w]))
        nodes += [helper.make_node("Cast", ["ir"], ["ir_f"], to=f32, name="cast_ir"),
                  helper.make_node("Unsqueeze", ["ir_f", "ch_axis"], ["ir_nchw"], name="add_channel"),
                  helper.make_node("Conv", ["ir_nchw", "w_ir", "b_ir"], ["logit_ir"], name="conv_ir")]
        init("ch_axis", np.array([1], np.int64))
        init("w_ir", rng.normal(0, 0.02, (classes, 1, 1, 1)).astype(np.float32))
        init("b_ir", rng.normal(0, 0.5, classes).astype(np.float32))
        branches.append("logit_ir")
    if len(branches) == 2:
        nodes.append(helper.make_node("Add", branches, ["logits"], name="fuse"))
    else:
        nodes.append(helper.make_node("Identity", branches, ["logits"], name="logits"))
    init("axes", np.array([1], np.int64))
    init("k255", np.array(255.0, np.float32))
    init("zero", np.array(0.0, np.float32))
    nodes += [
        helper.make_node("ArgMax", ["logits"], ["ids"], axis=1, keepdims=0, name="argmax"),
        helper.make_node("Cast", ["ids"], ["ids_f"], to=f32, name="ids_float"),  # TensorRT: uint8 only from float
        helper.make_node("Cast", ["ids_f"], ["mask"], to=TensorProto.UINT8, name="mask_u8"),
        helper.make_node("ReduceMax", ["logits", "axes"], ["top"], keepdims=1, name="top"),
        helper.make_node("Sub", ["logits", "top"], ["shifted"], name="shift"),
        helper.make_node("Exp", ["shifted"], ["e"], name="exp"),
        helper.make_node("ReduceSum", ["e", "axes"], ["s"], keepdims=0, name="sum"),
        helper.make_node("Reciprocal", ["s"], ["p"], name="maxprob"),
        helper.make_node("Mul", ["p", "k255"], ["p255"], name="scale"),
        helper.make_node("Round", ["p255"], ["r"], name="round"),
        helper.make_node("Clip", ["r", "zero", "k255"], ["c"], name="clip"),
        helper.make_node("Cast", ["c"], ["confidence"], to=TensorProto.UINT8, name="conf_u8"),
    ]
    g = helper.make_graph(nodes, graph, inputs, [u8_info("mask", [1, h, w]), u8_info("confidence", [1, h, w])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])


def qdq_graph(graph: str, h: int, w: int, classes: int = 4, seed: int = 0) -> onnx.ModelProto:
    """float_graph with explicit quantization: QuantizeLinear/DequantizeLinear (int8,
    symmetric) on every conv input, as a Q/DQ export places them."""
    model = float_graph(graph, h, w, classes, seed)
    g = model.graph
    g.initializer.extend([numpy_helper.from_array(np.array(2.0, np.float32), "q_scale"),
                          numpy_helper.from_array(np.array(0, np.int8), "q_zero")])
    for node in list(g.node):
        if node.op_type == "Conv":
            x = node.input[0]
            at = list(g.node).index(node)
            g.node.insert(at, helper.make_node("QuantizeLinear", [x, "q_scale", "q_zero"], [f"{x}_q"], name=f"q_{x}"))
            g.node.insert(at + 1, helper.make_node("DequantizeLinear", [f"{x}_q", "q_scale", "q_zero"], [f"{x}_dq"],
                                                   name=f"dq_{x}"))
            node.input[0] = f"{x}_dq"
    return model


def add_qdq_records(bundle_root: Path, graphs=("fused", "ir_only")) -> None:
    """Add the bundle's "quantized" records (csk_ros.bundle's contract) for Q/DQ versions of `graphs`."""
    manifest = json.loads((bundle_root / "manifest.json").read_text())
    h, w = manifest["input"]["height"], manifest["input"]["width"]
    for graph in graphs:
        path = bundle_root / f"{graph}.int8.onnx"
        save_model(qdq_graph(graph, h, w), path)
        manifest.setdefault("quantized", {})[graph] = dict(manifest["graphs"][graph], file=path.name,
                                                           sha256=sha256_of(path), precision="int8",
                                                           tensorrt_compatible=True)  # symmetric int8
    (bundle_root / "manifest.json").write_text(json.dumps(manifest, indent=2))
    assert set(load_manifest(bundle_root).quantized) == set(graphs)


def make_fake_bundle(root: Path, graphs=("fused", "ir_only"), h: int = H, w: int = W, make=identity_graph) -> Path:
    """A valid model bundle (manifest + ONNX graphs) following csk_ros.bundle.load_manifest."""
    root.mkdir(parents=True, exist_ok=True)
    records = {}
    for graph in graphs:
        path = root / f"{graph}.onnx"
        save_model(make(graph, h, w), path)
        records[graph] = {"file": path.name, "sha256": sha256_of(path),
                          "inputs": [n for n in ("eo", "ir") if n in {"fused": "eo ir", "ir_only": "ir",
                                                                        "eo_only": "eo"}[graph].split()],
                          "outputs": ["mask", "confidence"]}
    manifest = {"format_version": 1, "class_names": ["background", "person", "car", "bike"],
                "palette": [[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]],
                "input": {"height": h, "width": w}, "graphs": records, "engines": []}
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2))
    load_manifest(root)  # the fixture itself must be a valid bundle
    return root


def write_image(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)


def run_build(*args, cwd=REPO):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "engines.build", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def cudart_with_a_gpu():
    """cuda-python's runtime module for the GPU test modules, called at import: the module is skipped,
    with the reason, where cuda-python is missing or no CUDA GPU is visible."""
    import pytest

    from csk_ros.backends.trt_build import import_cudart

    try:
        cudart = import_cudart()
    except ImportError as exc:  # pragma: no cover - depends on the machine
        pytest.skip(f"cuda-python is not installed: {exc}", allow_module_level=True)
    err, count = cudart.cudaGetDeviceCount()
    if int(err) != 0 or count < 1:  # pragma: no cover - depends on the machine
        pytest.skip(f"no CUDA GPU visible to TensorRT ({err})", allow_module_level=True)
    return cudart
