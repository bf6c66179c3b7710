"""Export -> bundle -> load -> infer, parity with torch, and every bundle
validation error triggered on purpose."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from csk_ros.backends import load_bundle
from csk_ros.backends.engine_check import engine_problems
from csk_ros.bundle import BundleError, EngineRecord, load_manifest, sha256_of
from engines.export import ExportError, export_bundle, sample_inputs
from engines.graphs import DeployGraph
from training.checkpoint import model_from_checkpoint

ROOT = Path(__file__).resolve().parents[2]


def edit_manifest(bundle: Path, change) -> None:
    path = bundle / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def test_bundle_round_trip_matches_torch(tiny_bundle, tiny_checkpoint):
    manifest = json.loads((tiny_bundle / "manifest.json").read_text())
    assert set(manifest["graphs"]) == {"fused", "ir_only"}
    assert manifest["input"]["height"] == 48 and manifest["input"]["width"] == 64
    assert len(manifest["class_names"]) == 9 and len(manifest["palette"]) == 9
    for rec in manifest["graphs"].values():
        assert rec["sha256"] == sha256_of(tiny_bundle / rec["file"])
        assert rec["parity"]["mask_disagreement"] <= 1e-3
    seg = load_bundle(tiny_bundle, backend="onnxruntime")
    model, _ = model_from_checkpoint(tiny_checkpoint)
    sample = sample_inputs(48, 64, count=1, seed=7)[0]
    eo, ir = sample["eo"][0], sample["ir"][0]
    mask, conf = seg.fused(eo, ir)
    assert mask.shape == (48, 64) and mask.dtype == np.uint8 and conf.dtype == np.uint8
    assert mask.max() < 9
    with torch.no_grad():
        t_mask, t_conf = DeployGraph(model, "fused")(torch.from_numpy(sample["eo"]), torch.from_numpy(sample["ir"]))
    assert (mask == t_mask[0].numpy()).mean() >= 0.999
    assert np.abs(conf.astype(int) - t_conf[0].numpy().astype(int)).max() <= 1
    ir_mask, _ = seg.ir_only(ir)
    with torch.no_grad():
        t_ir, _ = DeployGraph(model, "ir_only")(torch.from_numpy(sample["ir"]))
    assert (ir_mask == t_ir[0].numpy()).mean() >= 0.999
    assert seg.backend_name == "onnxruntime" and "CPUExecutionProvider" in seg.info["providers"]


def test_segmenter_rejects_wrong_input_size(tiny_bundle):
    seg = load_bundle(tiny_bundle, backend="onnxruntime", warm_up=False)
    with pytest.raises(ValueError, match=r"IR image must be uint8 \(48, 64\), got uint8 \(40, 64\)"):
        seg.ir_only(np.zeros((40, 64), np.uint8))
    with pytest.raises(ValueError, match="EO image must be uint8"):
        seg.fused(np.zeros((48, 64, 3), np.float32), np.zeros((48, 64), np.uint8))


def test_failed_parity_leaves_no_bundle(tiny_checkpoint, tmp_path):
    out = tmp_path / "bad"
    with pytest.raises(ExportError, match="disagrees with torch"):
        export_bundle(tiny_checkpoint, out, graphs=("ir_only",), max_disagreement=-1.0, log=lambda *_: None)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no staging directory left behind


def test_export_refuses_to_overwrite_without_force(tiny_bundle, tiny_checkpoint):
    with pytest.raises(ExportError, match="pass --force"):
        export_bundle(tiny_checkpoint, tiny_bundle, graphs=("ir_only",), log=lambda *_: None)


@pytest.mark.parametrize("change, message", [
    (lambda b: (b / "ir_only.onnx").unlink(), "graph file missing"),
    (lambda b: (b / "ir_only.onnx").write_bytes((b / "ir_only.onnx").read_bytes()[:-100]), "sha256 of ir_only.onnx"),
    (lambda b: (b / "manifest.json").write_text("{not json"), "not valid JSON"),
    (lambda b: (b / "manifest.json").unlink(), "not a model bundle"),
    (lambda b: edit_manifest(b, lambda m: m.update(format_version=99)), "format_version 99 is not supported"),
    (lambda b: edit_manifest(b, lambda m: m["graphs"].pop("ir_only")), "no 'ir_only' graph"),
    (lambda b: edit_manifest(b, lambda m: m["graphs"]["ir_only"].update(file="../x.onnx")), "outside the bundle"),
    (lambda b: edit_manifest(b, lambda m: m["graphs"]["fused"].update(inputs=["ir", "eo"])),
     "differs from the contract"),
    (lambda b: edit_manifest(b, lambda m: m.update(palette=m["palette"][:3])), "one RGB triple"),
    (lambda b: edit_manifest(b, lambda m: m["input"].update(height=32)),
     "input 'eo' is tensor(uint8) [1, 48, 64, 3], the manifest says uint8 [1, 32, 64, 3]"),
    (lambda b: edit_manifest(b, lambda m: m.pop("class_names")), "missing 'class_names'"),
])
def test_bundle_errors_are_specific(bundle_copy, change, message):
    change(bundle_copy)
    with pytest.raises(BundleError) as err:
        load_bundle(bundle_copy, backend="onnxruntime", warm_up=False)
    assert message in str(err.value)


def test_missing_bundle_directory(tmp_path):
    with pytest.raises(BundleError, match="model bundle directory not found"):
        load_bundle(tmp_path / "nope")


def test_corrupt_onnx_with_matching_hash_is_reported(bundle_copy):
    (bundle_copy / "ir_only.onnx").write_bytes(b"\x00garbage")
    edit_manifest(bundle_copy, lambda m: m["graphs"]["ir_only"].update(sha256=sha256_of(bundle_copy / "ir_only.onnx")))
    with pytest.raises(BundleError, match="ONNX Runtime cannot load"):
        load_bundle(bundle_copy, backend="onnxruntime", warm_up=False)


def engine_record(bundle, path, **kw):
    fields = dict(graph="ir_only", path=path, precision="fp16", onnx_sha256=bundle.graphs["ir_only"].sha256,
                  tensorrt_version="10.8.0", gpu_name="Orin", compute_capability="8.7")
    fields.update(kw)
    fields.setdefault("sha256", sha256_of(path) if path.exists() else "")
    return EngineRecord(**fields)


def test_engine_records_are_checked_against_this_machine(bundle_copy):
    engine_path = bundle_copy / "ir_only.fp16.trt10.8.orin.engine"
    engine_path.write_bytes(b"engine-bytes" * 100)
    bundle = load_manifest(bundle_copy)
    here = ("10.8.0", "Orin", "8.7")
    assert engine_problems(engine_record(bundle, engine_path), bundle, *here) == []
    cases = {
        "built with TensorRT 10.3.0": engine_record(bundle, engine_path, tensorrt_version="10.3.0"),
        "built for NVIDIA H100 (sm 9.0)": engine_record(bundle, engine_path, gpu_name="NVIDIA H100",
                                                        compute_capability="9.0"),
        "ONNX hash changed": engine_record(bundle, engine_path, onnx_sha256="0" * 64),
        "truncated or corrupt": engine_record(bundle, engine_path, sha256="f" * 64),
    }
    for message, record in cases.items():
        problems = engine_problems(record, bundle, *here)
        assert len(problems) == 1 and message in problems[0], (message, problems)
    engine_path.unlink()
    assert "engine file missing" in engine_problems(engine_record(bundle, engine_path, sha256="x"), bundle, *here)[0]


def test_manifest_engine_record_validation(bundle_copy):
    edit_manifest(bundle_copy, lambda m: m.update(engines=[{"graph": "ir_only", "file": "x.engine"}]))
    with pytest.raises(BundleError, match=r"engines\[0\]: missing 'precision'"):
        load_manifest(bundle_copy)
    edit_manifest(bundle_copy, lambda m: m.update(engines=[{
        "graph": "ir_only", "file": "x.engine", "precision": "fp8", "onnx_sha256": "", "sha256": "",
        "tensorrt_version": "10", "gpu_name": "g", "compute_capability": "8.7"}]))
    with pytest.raises(BundleError, match="precision must be one of"):
        load_manifest(bundle_copy)


def test_export_cli_reports_missing_checkpoint(tmp_path):
    result = subprocess.run([sys.executable, "-m", "engines.export", "--checkpoint", str(tmp_path / "none.pt"),
                             "--out", str(tmp_path / "b")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "checkpoint not found" in result.stderr
    assert not (tmp_path / "b").exists()


def test_export_guards_its_output_and_graph_list(tiny_checkpoint, tmp_path):
    precious = tmp_path / "src"
    precious.mkdir()
    (precious / "code.py").write_text("keep me")
    with pytest.raises(ExportError, match="is not a model bundle"):
        export_bundle(tiny_checkpoint, precious, force=True, log=lambda *_: None)
    assert (precious / "code.py").read_text() == "keep me"
    with pytest.raises(ExportError, match="must include ir_only"):
        export_bundle(tiny_checkpoint, tmp_path / "b", graphs=("fused",), log=lambda *_: None)
    with pytest.raises(ExportError, match=r"unknown graph\(s\) \['ir-only'\]"):
        export_bundle(tiny_checkpoint, tmp_path / "b", graphs=("ir-only",), log=lambda *_: None)


@pytest.mark.parametrize("change, message", [
    (lambda m: m["graphs"].update(ir_only=5), "must be a JSON object, got int"),
    (lambda m: m.update(thermal_scaling={"mode": "fixed", "low": 9, "high": 1}), "bad thermal_scaling"),
    (lambda m: m.update(palette=[1] * 9), "one RGB triple"),
])
def test_malformed_manifest_values_are_bundle_errors(bundle_copy, change, message):
    edit_manifest(bundle_copy, change)
    with pytest.raises(BundleError, match=message):
        load_manifest(bundle_copy)


def test_auto_falls_back_on_any_tensorrt_failure(tiny_bundle, monkeypatch):
    import csk_ros.backends as backends

    def broken(*_args, **_kwargs):
        raise RuntimeError("cudaErrorMemoryAllocation")

    monkeypatch.setattr(backends, "_tensorrt_runner", broken)
    messages = []
    seg = load_bundle(tiny_bundle, backend="auto", log=messages.append)
    assert seg.backend_name == "onnxruntime" and "cudaErrorMemoryAllocation" in seg.fallback_reason
    assert messages and "falling back to ONNX Runtime" in messages[0]
    with pytest.raises(BundleError, match="TensorRT backend failed: cudaErrorMemoryAllocation"):
        load_bundle(tiny_bundle, backend="tensorrt")


def test_onnxruntime_threads_do_not_spin_unless_asked(tiny_bundle):
    """ORT's default busy-wait would take a core from the node's decoding and the camera drivers."""
    quiet = load_bundle(tiny_bundle, backend="onnxruntime", warm_up=False)
    spinning = load_bundle(tiny_bundle, backend="onnxruntime", warm_up=False, ort_spinning=True)
    for segmenter, expected in ((quiet, "0"), (spinning, "1")):
        for session in segmenter.runner.sessions.values():
            assert session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == expected
