"""INT8 QDQ quantisation of a bundle: quantise -> accuracy gate -> load ->
run, on the tiny 48x64 model (random weights: these tests check the path and
the contracts, not accuracy; benchmarks/backends.py --int8 measures that)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from csk_ros.backends import load_bundle
from csk_ros.bundle import BundleError, load_manifest, sha256_of
from engines.export import sample_inputs
from engines.onnx_cost import onnx_cost
from engines.quantize import QuantizeError, float_nodes, quantize_bundle

ROOT = Path(__file__).resolve().parents[2]
QUIET = dict(num_images=8, val_images=4, log=lambda *_: None)


def snapshot(bundle: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(bundle.iterdir())}


def test_quantise_gate_load_and_run_int8(bundle_copy, monkeypatch):
    records = quantize_bundle(bundle_copy, **QUIET)
    assert set(records) == {"fused", "ir_only"}
    bundle = load_manifest(bundle_copy)
    for graph, rec in records.items():
        qdq = bundle.quantized[graph]
        assert qdq.path.name == f"{graph}.int8.{qdq.sha256[:12]}.onnx" and qdq.sha256 == sha256_of(qdq.path)
        assert rec["precision"] == "int8" and rec["source_sha256"] == bundle.graphs[graph].sha256
        assert rec["calibration"]["split"] == "train" and rec["calibration"]["num_images"] == 8
        assert rec["validation"]["split"] == "val" and rec["validation"]["drop_points"] <= 1.0
        kept = " ".join(rec["kept_float"])
        assert "pre-processing: Cast" in kept and "ArgMax" in kept and "Resize" in kept
        model = onnx.load(str(qdq.path))
        ops = [n.op_type for n in model.graph.node]
        assert ops.count("QuantizeLinear") > 5 and ops.count("DequantizeLinear") > 5
        # the camera contract survives quantisation: uint8 in, uint8 out
        assert all(v.type.tensor_type.elem_type == onnx.TensorProto.UINT8
                   for v in list(model.graph.input) + list(model.graph.output))
    # the INT8 graphs cost what the fp32 ones cost (scales and zero points are not parameters)
    assert onnx_cost(bundle.quantized["ir_only"].path) == onnx_cost(bundle_copy / "ir_only.onnx")
    assert onnx_cost(bundle.quantized["fused"].path)["macs"] == onnx_cost(bundle_copy / "fused.onnx")["macs"]
    fp32 = load_bundle(bundle_copy, backend="onnxruntime")
    int8 = load_bundle(bundle_copy, backend="onnxruntime", precision="int8")
    assert int8.info["precision"] == "int8"
    assert int8.info["graph_files"] == {g: bundle.quantized[g].path.name for g in ("fused", "ir_only")}
    assert fp32.info["graph_files"] == {"fused": "fused.onnx", "ir_only": "ir_only.onnx"}
    sample = sample_inputs(48, 64, count=1, seed=3)[0]
    eo, ir = sample["eo"][0], sample["ir"][0]
    for run in (lambda s: s.fused(eo, ir), lambda s: s.ir_only(ir)):
        mask, conf = run(int8)
        assert mask.shape == conf.shape == (48, 64) and mask.dtype == conf.dtype == np.uint8 and mask.max() < 9
        assert (mask == run(fp32)[0]).mean() >= 0.9
    # auto: TensorRT is asked for int8 engines; when it cannot, ONNX Runtime runs the QDQ graphs
    import csk_ros.backends as backends

    asked = []

    def no_tensorrt(bundle, rebuild, log=None, precision="fp32"):
        asked.append(precision)
        raise ImportError("no tensorrt here")

    monkeypatch.setattr(backends, "_tensorrt_runner", no_tensorrt)
    auto = load_bundle(bundle_copy, backend="auto", precision="int8", warm_up=False)
    assert asked == ["int8"] and auto.backend_name == "onnxruntime" and auto.info["precision"] == "int8"


def test_gate_refuses_and_writes_nothing(bundle_copy):
    before = snapshot(bundle_copy)
    # a forced threshold below any possible drop: the refuse path, never a tuned number
    with pytest.raises(QuantizeError, match=r"fused: INT8 validation mIoU .* below fp32 .*limit -1.00.*not written"):
        quantize_bundle(bundle_copy, max_drop=-1.0, **QUIET)
    assert snapshot(bundle_copy) == before  # no QDQ file, no staging dir, manifest untouched
    with pytest.raises(BundleError, match="python -m engines.quantize"):
        load_bundle(bundle_copy, backend="onnxruntime", precision="int8", warm_up=False)


@pytest.mark.parametrize("int8_miou, passes", [(0.49, True), (0.4899, False)])
def test_gate_boundary_is_one_point(bundle_copy, monkeypatch, int8_miou, passes):
    """fp32 0.50 vs int8 0.49 is a 1.00-point drop: allowed; 1.01 points: refused."""
    import engines.quantize as quantize

    calls = []

    def fixed_miou(run, graph, images, num_classes):
        calls.append(graph)
        miou = 0.50 if len(calls) % 2 else int8_miou  # per graph: the fp32 run, then the int8 run
        return {"miou": miou, "masks": np.zeros((1, 2, 2), np.uint8)}

    monkeypatch.setattr(quantize, "session_miou", fixed_miou)
    if passes:
        records = quantize_bundle(bundle_copy, **QUIET)
        assert {r["validation"]["drop_points"] for r in records.values()} == {1.0}
    else:
        with pytest.raises(QuantizeError, match="1.01 points below"):
            quantize_bundle(bundle_copy, **QUIET)


def test_a_looser_gate_is_refused(bundle_copy):
    with pytest.raises(QuantizeError, match="above the accuracy gate's 1.0"):
        quantize_bundle(bundle_copy, max_drop=5.0, **QUIET)


def test_requantising_replaces_the_files_and_removes_the_old_ones(bundle_copy):
    first = quantize_bundle(bundle_copy, **QUIET)
    second = quantize_bundle(bundle_copy, method="percentile", **QUIET)
    bundle = load_manifest(bundle_copy)  # hashes verified: every file the manifest names is there
    for graph in ("fused", "ir_only"):
        assert bundle.quantized[graph].path.name == second[graph]["file"]
        if first[graph]["file"] != second[graph]["file"]:
            assert not (bundle_copy / first[graph]["file"]).exists()
    assert sorted(p.name for p in bundle_copy.glob("*.int8.*.onnx")) == sorted(r["file"] for r in second.values())


def test_one_failing_graph_blocks_both(bundle_copy, monkeypatch):
    """Fused passes, IR-only fails: the bundle gets neither (no half-quantised bundle)."""
    import engines.quantize as quantize

    real = quantize.session_miou
    calls = []

    def worse_ir_only_int8(run, graph, images, num_classes):
        result = real(run, graph, images, num_classes)
        calls.append(graph)
        if graph == "ir_only" and calls.count("ir_only") == 2:  # the int8 run of ir_only
            result = dict(result, miou=result["miou"] - 0.05)
        return result

    monkeypatch.setattr(quantize, "session_miou", worse_ir_only_int8)
    before = snapshot(bundle_copy)
    with pytest.raises(QuantizeError, match="ir_only: INT8 validation mIoU .* 5.00 points below"):
        quantize_bundle(bundle_copy, **QUIET)
    assert calls == ["fused", "fused", "ir_only", "ir_only"]
    assert snapshot(bundle_copy) == before


def test_tensorrt_flavour_is_symmetric_int8(bundle_copy):
    records = quantize_bundle(bundle_copy, graphs=("ir_only",), activations="int8-symmetric", **QUIET)
    assert records["ir_only"]["tensorrt_compatible"] is True
    model = onnx.load(str(load_manifest(bundle_copy).quantized["ir_only"].path))
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    zero_points = [inits[n.input[2]] for n in model.graph.node
                   if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2]
    assert zero_points and all(z.dtype == np.int8 and not z.any() for z in zero_points)
    assert all(inits[n.input[0]].dtype == np.int8 for n in model.graph.node  # weights int8, biases stay float
               if n.op_type == "DequantizeLinear" and n.input[0] in inits)
    assert set(load_manifest(bundle_copy).quantized) == {"ir_only"}
    # the bundle's fused graph has no INT8 version: int8 refuses at start-up
    with pytest.raises(BundleError, match="has none for fused"):
        load_bundle(bundle_copy, backend="onnxruntime", precision="int8", warm_up=False)


def test_int8_without_quantised_graphs_is_a_clear_start_up_error(tiny_bundle):
    for backend in ("onnxruntime", "auto"):
        with pytest.raises(BundleError, match=r"INT8 QDQ graphs.*python -m engines.quantize --bundle"):
            load_bundle(tiny_bundle, backend=backend, precision="int8", warm_up=False)
    with pytest.raises(ValueError, match="precision must be one of"):
        load_bundle(tiny_bundle, backend="onnxruntime", precision="fp16")


def test_float_regions_of_the_graph(tiny_bundle):
    """The uint8 cast / normalisation and the head + ArgMax/confidence stay float; every other conv is quantised."""
    model = onnx.load(str(tiny_bundle / "fused.onnx"))
    excluded, groups = float_nodes(model)
    kinds = {n.name: n.op_type for n in model.graph.node}
    pre = {kinds[n] for n in groups["pre-processing"]}
    post = {kinds[n] for n in groups["head and post-processing"]}
    assert {"Cast", "Sub", "Div"} <= pre and "Conv" not in pre
    assert {"Resize", "ArgMax", "Exp", "Round"} <= post
    assert [kinds[n] for n in groups["head and post-processing"]].count("Conv") == 1  # the fused head only
    convs = [n for n, k in kinds.items() if k == "Conv"]
    assert len(set(convs) - set(excluded)) == len(convs) - 1


def test_quantize_cli_errors(tmp_path, bundle_copy):
    result = subprocess.run([sys.executable, "-m", "engines.quantize", "--bundle", str(tmp_path / "none")],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "model bundle directory not found" in result.stderr
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    manifest["training"]["config"]["train"]["eval_split"] = "test"
    (bundle_copy / "manifest.json").write_text(json.dumps(manifest))
    result = subprocess.run([sys.executable, "-m", "engines.quantize", "--bundle", str(bundle_copy)],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "never on a test split" in result.stderr
