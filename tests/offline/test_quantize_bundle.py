"""The bundle's "quantized" records (INT8 QDQ graphs): parsed and validated
like "graphs", optional for old bundles, and the source an int8 engine is
checked against."""

import json
from pathlib import Path

import onnx
import pytest

from csk_ros.backends.engine_check import engine_problems
from csk_ros.bundle import BundleError, EngineRecord, load_manifest, sha256_of

HERE = ("10.8.0", "Orin", "8.7")


def edit_manifest(bundle: Path, change) -> None:
    path = bundle / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def add_quantized(bundle: Path, graph: str = "ir_only") -> Path:
    """A stand-in INT8 record: the fp32 graph (same I/O) with a metadata tag, so its file and hash differ."""
    qpath = bundle / f"{graph}.int8.onnx"
    model = onnx.load(str(bundle / f"{graph}.onnx"))
    onnx.helper.set_model_props(model, {"stand_in": "int8"})
    onnx.save(model, str(qpath))
    record = {"file": qpath.name, "sha256": sha256_of(qpath), "inputs": ["ir"] if graph == "ir_only" else ["eo", "ir"],
              "outputs": ["mask", "confidence"], "precision": "int8",
              "calibration": {"method": "minmax", "num_images": 4, "split": "train"}, "kept_float": ["ArgMax"],
              "quantizer": "onnxruntime.quantization"}
    edit_manifest(bundle, lambda m: m.setdefault("quantized", {}).update({graph: record}))
    return qpath


def test_bundle_without_quantized_graphs_stays_valid(tiny_bundle):
    bundle = load_manifest(tiny_bundle)
    assert bundle.quantized == {}
    assert bundle.source_graph("ir_only", "int8") is bundle.graphs["ir_only"]
    assert bundle.source_graph("fused", "fp32") is bundle.graphs["fused"]


def test_quantized_records_are_parsed_and_picked_by_precision(bundle_copy):
    qpath = add_quantized(bundle_copy, "ir_only")
    add_quantized(bundle_copy, "fused")
    bundle = load_manifest(bundle_copy)
    assert set(bundle.quantized) == {"fused", "ir_only"}
    record = bundle.source_graph("ir_only", "int8")
    assert record.path == qpath.resolve() and record.sha256 == sha256_of(qpath)
    assert record.inputs == ("ir",) and record.outputs == ("mask", "confidence")
    for precision in ("fp32", "fp16"):
        assert bundle.source_graph("ir_only", precision) is bundle.graphs["ir_only"]
    with pytest.raises(BundleError, match="no 'eo_only' graph"):
        bundle.source_graph("eo_only", "fp32")


def test_int8_engine_is_checked_against_the_qdq_graph(bundle_copy):
    add_quantized(bundle_copy, "ir_only")
    engine_path = bundle_copy / "ir_only.int8.engine"
    engine_path.write_bytes(b"engine" * 10)
    bundle = load_manifest(bundle_copy)
    qdq = bundle.quantized["ir_only"]
    assert qdq.sha256 != bundle.graphs["ir_only"].sha256

    def engine(precision, onnx_sha256):
        return EngineRecord("ir_only", engine_path, precision, onnx_sha256, sha256_of(engine_path), *HERE)

    assert engine_problems(engine("int8", qdq.sha256), bundle, *HERE) == []
    stale = engine_problems(engine("int8", bundle.graphs["ir_only"].sha256), bundle, *HERE)
    assert len(stale) == 1 and "ir_only.int8.onnx (ONNX hash changed)" in stale[0]
    assert engine_problems(engine("fp16", bundle.graphs["ir_only"].sha256), bundle, *HERE) == []
    assert "ONNX hash changed" in engine_problems(engine("fp16", qdq.sha256), bundle, *HERE)[0]


def test_int8_engine_without_qdq_graph_falls_back_to_the_float_source(bundle_copy):
    """TensorRT 10's implicit-calibration INT8 engines come from the fp32 graph."""
    engine_path = bundle_copy / "ir_only.int8.engine"
    engine_path.write_bytes(b"engine")
    bundle = load_manifest(bundle_copy)
    record = EngineRecord("ir_only", engine_path, "int8", bundle.graphs["ir_only"].sha256, sha256_of(engine_path),
                          *HERE)
    assert engine_problems(record, bundle, *HERE) == []


@pytest.mark.parametrize("change, message", [
    (lambda b: (b / "ir_only.int8.onnx").write_bytes(b"changed"), "sha256 of ir_only.int8.onnx does not match"),
    (lambda b: (b / "ir_only.int8.onnx").unlink(), "quantized.ir_only: graph file missing"),
    (lambda b: edit_manifest(b, lambda m: m["quantized"]["ir_only"].update(file="../x.onnx")), "outside the bundle"),
    (lambda b: edit_manifest(b, lambda m: m["quantized"]["ir_only"].update(file="/tmp/x.onnx")), "relative path"),
    (lambda b: edit_manifest(b, lambda m: m["quantized"]["ir_only"].update(inputs=["eo"])),
     "differs from the contract"),
    (lambda b: edit_manifest(b, lambda m: m["quantized"]["ir_only"].update(precision="fp16")),
     "precision must be 'int8'"),
    (lambda b: edit_manifest(b, lambda m: m["quantized"]["ir_only"].pop("precision")), "missing 'precision'"),
    (lambda b: edit_manifest(b, lambda m: m["quantized"]["ir_only"].pop("sha256")), "missing 'sha256'"),
    (lambda b: edit_manifest(b, lambda m: m["quantized"].update(eo_only=m["quantized"]["ir_only"])),
     "quantized.eo_only: INT8 graph for 'eo_only', which the bundle has no fp32 graph"),
    (lambda b: edit_manifest(b, lambda m: m.update(quantized=[])), "'quantized' must be dict"),
    (lambda b: edit_manifest(b, lambda m: m["quantized"]["ir_only"].update(source_sha256="0" * 64)),
     "ir_only.int8.onnx was quantised from a different ir_only.onnx"),
])
def test_quantized_record_errors_are_specific(bundle_copy, change, message):
    add_quantized(bundle_copy, "ir_only")
    change(bundle_copy)
    with pytest.raises(BundleError) as err:
        load_manifest(bundle_copy)
    assert message in str(err.value)


def test_quantized_hash_error_names_the_fix(bundle_copy):
    add_quantized(bundle_copy, "ir_only")
    (bundle_copy / "ir_only.int8.onnx").write_bytes(b"x")
    with pytest.raises(BundleError, match="engines.quantize"):
        load_manifest(bundle_copy)
    assert load_manifest(bundle_copy, verify_hashes=False).quantized["ir_only"].name == "ir_only"
