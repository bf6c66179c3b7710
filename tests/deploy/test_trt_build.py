"""TensorRT engine building around TensorRT itself: naming, manifest records,
trtexec line, ONNX pre-flight, calibration data, the build CLI without
TensorRT, and the ONNX Runtime fallback. Runs on machines without a GPU; the
real build/run tests are in test_tensorrt_gpu.py."""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from csk_ros.backends.engine_check import (
    engine_problems,
    expected_io,
    io_problems,
    select_engine,
    uint8_intermediate_problems,
)
from csk_ros.backends.trt_build import (
    INSTALL_HINT,
    EngineBuildError,
    build_and_record,
    calibration_cache_path,
    cuda_check,
    engine_file_name,
    format_parser_error,
    gpu_slug,
    record_engine,
    trtexec_command,
)
from csk_ros.bundle import BundleError, atomic_write_bytes, load_manifest, sha256_of
from engines.trt_calibration import calibration_batches
from tests.support.trt_fixtures import (  # noqa: F401 - shared with tests/offline and tests/gpu
    H,
    W,
    add_qdq_records,
    float_graph,
    identity_graph,
    make_fake_bundle,
    qdq_graph,
    run_build,
    save_model,
    u8_info,
    write_image,
)

REPO = Path(__file__).resolve().parents[2]
HAVE_TRT = importlib.util.find_spec("tensorrt") is not None
ORIN = ("10.8.0.43", "NVIDIA Jetson AGX Orin", "8.7")
NO_TRT = pytest.mark.skipif(HAVE_TRT, reason="tensorrt is installed here; these tests check the behaviour without it")


# --------------------------------------------------------------------------- fake bundles

@pytest.fixture
def bundle_dir(tmp_path):
    return make_fake_bundle(tmp_path / "bundle")


def fake_io(bundle, graph):
    return expected_io(bundle, graph)


# --------------------------------------------------------------------------- naming

@pytest.mark.parametrize("name,slug", [
    ("NVIDIA Jetson AGX Orin", "orin"),
    ("Orin (nvgpu)", "orin"),
    ("NVIDIA Jetson Orin Nano", "orinnano"),
    ("NVIDIA Jetson Orin NX 16GB", "orinnx"),
    ("NVIDIA H100 80GB HBM3", "h100"),
    ("NVIDIA A100-SXM4-40GB", "a100"),
    ("NVIDIA GeForce RTX 4090", "rtx4090"),
    ("Tesla T4", "t4"),
    ("NVIDIA", "gpu"),
])
def test_gpu_slug(name, slug):
    assert gpu_slug(name) == slug
    assert gpu_slug(name).isalnum() and gpu_slug(name).islower() and len(gpu_slug(name)) <= 16


def test_engine_file_name():
    assert engine_file_name("ir_only", "fp16", "10.8.0.43", "NVIDIA Jetson AGX Orin") == \
        "ir_only.fp16.trt10.8.orin.engine"
    assert engine_file_name("fused", "int8", "10.3.0", "NVIDIA H100 80GB HBM3") == "fused.int8.trt10.3.h100.engine"
    with pytest.raises(ValueError, match="precision"):
        engine_file_name("fused", "bf16", "10.3", "x")
    with pytest.raises(ValueError, match="graph"):
        engine_file_name("both", "fp16", "10.3", "x")


def test_trtexec_command(tmp_path):
    onnx_path, engine = tmp_path / "my models" / "ir_only.onnx", tmp_path / "ir_only.fp16.engine"
    fp16 = shlex.split(trtexec_command(onnx_path, engine, "fp16", 512))
    assert fp16 == ["trtexec", f"--onnx={onnx_path}", f"--saveEngine={engine}", "--memPoolSize=workspace:512M",
                    "--fp16"]
    fp32 = shlex.split(trtexec_command(onnx_path, engine, "fp32", 1024))
    assert "--fp16" not in fp32 and "--int8" not in fp32 and "--memPoolSize=workspace:1024M" in fp32
    int8 = shlex.split(trtexec_command(onnx_path, engine, "int8", 256, calib_cache=tmp_path / "c.calib"))
    assert "--int8" in int8 and "--fp16" in int8 and f"--calib={tmp_path / 'c.calib'}" in int8
    assert "--calib" not in " ".join(shlex.split(trtexec_command(onnx_path, engine, "int8", 256)))
    with pytest.raises(ValueError):
        trtexec_command(onnx_path, engine, "int4", 256)


def test_calibration_cache_path(bundle_dir):
    bundle = load_manifest(bundle_dir)
    default = calibration_cache_path(bundle, "fused")
    assert default.parent == bundle.root and bundle.graphs["fused"].sha256[:12] in default.name
    assert calibration_cache_path(bundle, "fused", "/tmp/{graph}.calib") == Path("/tmp/fused.calib")
    assert calibration_cache_path(bundle, "ir_only", "/tmp/c.calib") == Path("/tmp/c.calib")
    assert calibration_cache_path(bundle, "ir_only", "/tmp/c.calib", shared=True) == Path("/tmp/c.ir_only.calib")


# --------------------------------------------------------------------------- I/O contract and engine choice

def test_expected_io_and_io_problems(bundle_dir):
    bundle = load_manifest(bundle_dir)
    fused = expected_io(bundle, "fused")
    assert fused == {"eo": ("input", (1, H, W, 3), "uint8"), "ir": ("input", (1, H, W), "uint8"),
                     "mask": ("output", (1, H, W), "uint8"), "confidence": ("output", (1, H, W), "uint8")}
    assert set(expected_io(bundle, "ir_only")) == {"ir", "mask", "confidence"}
    assert io_problems(dict(fused), fused, "x.engine") == []
    wrong = dict(fused, confidence=("output", (1, H, W), "float32"), eo=("input", (1, 3, H, W), "uint8"))
    problems = io_problems(wrong, fused, "x.engine")
    assert len(problems) == 2 and any("'confidence'" in p and "float32" in p for p in problems)
    renamed = {("output0" if k == "mask" else k): v for k, v in fused.items()}
    (problem,) = io_problems(renamed, fused, "x.engine")
    assert "missing ['mask']" in problem and "unexpected ['output0']" in problem


def _record(bundle_dir, graph="ir_only", precision="fp16", info=ORIN, content=b"engine bytes", **extra):
    bundle = load_manifest(bundle_dir)
    name = engine_file_name(graph, precision, info[0], info[1])
    atomic_write_bytes(bundle_dir / name, content)
    import hashlib
    return record_engine(bundle_dir, graph, name, precision, bundle.graphs[graph].sha256,
                         hashlib.sha256(content).hexdigest(), *info, **extra)


def test_record_engine_appends_and_replaces(bundle_dir):
    first = _record(bundle_dir, content=b"one", built_at="2025-01-01T00:00:00Z")
    _record(bundle_dir, graph="fused")
    _record(bundle_dir, precision="int8")
    _record(bundle_dir, info=("10.8.0.43", "NVIDIA H100 80GB HBM3", "9.0"))
    assert len(load_manifest(bundle_dir).engines) == 4
    again = _record(bundle_dir, content=b"two")  # same graph + precision + GPU: replaces, does not duplicate
    engines = load_manifest(bundle_dir).engines
    assert len(engines) == 4
    mine = [e for e in engines if e.graph == "ir_only" and e.precision == "fp16" and e.gpu_name == ORIN[1]]
    assert len(mine) == 1 and mine[0].sha256 == again["sha256"] != first["sha256"]
    raw = json.loads((bundle_dir / "manifest.json").read_text())
    assert raw["graphs"] and raw["format_version"] == 1  # the rest of the manifest is untouched
    assert {"graph", "file", "precision", "onnx_sha256", "sha256", "tensorrt_version", "gpu_name",
            "compute_capability"} <= set(raw["engines"][-1])
    assert not [p for p in bundle_dir.iterdir() if p.name.endswith(".tmp")]


def test_select_engine(bundle_dir):
    bundle = load_manifest(bundle_dir)
    record, problems = select_engine(bundle, "ir_only", *ORIN)
    assert record is None and "no TensorRT engine for graph 'ir_only'" in problems[0]
    _record(bundle_dir, precision="fp32")
    _record(bundle_dir, precision="fp16")
    bundle = load_manifest(bundle_dir)
    assert select_engine(bundle, "ir_only", *ORIN)[0].precision == "fp16"  # the newest usable
    assert select_engine(bundle, "ir_only", *ORIN, precision="fp32")[0].precision == "fp32"
    record, problems = select_engine(bundle, "ir_only", "10.9.0", ORIN[1], ORIN[2])
    assert record is None and any("TensorRT 10.8.0.43" in p and "10.9.0" in p for p in problems)
    record, problems = select_engine(bundle, "ir_only", ORIN[0], "NVIDIA H100 80GB HBM3", "9.0")
    assert record is None and any("rebuild it here" in p for p in problems)
    (bundle_dir / engine_file_name("ir_only", "fp16", *ORIN[:2])).write_bytes(b"tampered")
    record, problems = select_engine(load_manifest(bundle_dir), "ir_only", *ORIN, precision="fp16")
    assert record is None and any("sha256" in p for p in problems)


def test_build_and_record_writes_checks_and_records(bundle_dir):
    bundle = load_manifest(bundle_dir)
    built = build_and_record(bundle, "fused", "fp16", ORIN, build_fn=lambda rec: b"serialized engine",
                             inspect_fn=lambda data: fake_io(bundle, "fused"), log=None, workspace_mb=256,
                             via="tensorrt")
    assert built.path == bundle_dir / "fused.fp16.trt10.8.orin.engine"
    assert built.path.read_bytes() == b"serialized engine"
    reloaded = load_manifest(bundle_dir)
    (rec,) = reloaded.engines
    assert rec.onnx_sha256 == reloaded.graphs["fused"].sha256 and rec.sha256 == sha256_of(built.path)
    assert (rec.tensorrt_version, rec.gpu_name, rec.compute_capability) == ORIN
    assert engine_problems(rec, reloaded, *ORIN) == []
    raw = json.loads((bundle_dir / "manifest.json").read_text())["engines"][0]
    assert raw["workspace_mb"] == 256 and raw["via"] == "tensorrt" and raw["built_at"].endswith("Z")
    assert bundle.engines == reloaded.engines  # the caller's Bundle sees the new record


def test_build_and_record_refuses_wrong_io_and_writes_nothing(bundle_dir):
    bundle = load_manifest(bundle_dir)
    before = (bundle_dir / "manifest.json").read_bytes()
    wrong = dict(fake_io(bundle, "ir_only"), mask=("output", (1, H, W), "int64"))
    with pytest.raises(EngineBuildError, match="'mask' is output int64"):
        build_and_record(bundle, "ir_only", "fp16", ORIN, build_fn=lambda rec: b"x", inspect_fn=lambda d: wrong,
                         log=None)
    with pytest.raises(EngineBuildError, match="no engine"):
        build_and_record(bundle, "ir_only", "fp16", ORIN, build_fn=lambda rec: b"", log=None)
    assert not list(bundle_dir.glob("*.engine"))
    assert (bundle_dir / "manifest.json").read_bytes() == before


def test_build_and_record_refuses_a_changed_onnx(bundle_dir):
    bundle = load_manifest(bundle_dir)
    with open(bundle_dir / "ir_only.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(BundleError, match="changed since the manifest"):
        build_and_record(bundle, "ir_only", "fp16", ORIN, build_fn=lambda rec: b"x", log=None)


def test_atomic_write_leaves_no_partial_engine(bundle_dir, monkeypatch):
    """The writer dies after part of the engine is on disk: no engine file, no temp
    file, and the manifest still lists no engine."""
    bundle = load_manifest(bundle_dir)
    before = (bundle_dir / "manifest.json").read_bytes()

    def dying_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", dying_fsync)
    with pytest.raises(OSError, match="disk full"):
        build_and_record(bundle, "ir_only", "fp16", ORIN, build_fn=lambda rec: b"\x01" * 100_000, log=None)
    assert sorted(p.name for p in bundle_dir.iterdir()) == ["fused.onnx", "ir_only.onnx", "manifest.json"]
    assert (bundle_dir / "manifest.json").read_bytes() == before


def test_atomic_write_keeps_the_old_file_when_replace_fails(tmp_path, monkeypatch):
    target = tmp_path / "x.engine"
    target.write_bytes(b"old engine")

    def failing_replace(src, dst):
        raise OSError("rename failed")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError):
        atomic_write_bytes(target, b"new engine")
    assert target.read_bytes() == b"old engine" and sorted(p.name for p in tmp_path.iterdir()) == ["x.engine"]


# --------------------------------------------------------------------------- small helpers

def test_cuda_check():
    assert cuda_check((0, 1234)) == 1234
    assert cuda_check((0, 1, 2)) == (1, 2)
    assert cuda_check((0,)) == ()
    with pytest.raises(RuntimeError, match="cudaMalloc failed: 2"):
        cuda_check((2, 0), "cudaMalloc")
    import enum

    class cudaError_t(enum.IntEnum):  # cuda-python's errors are enums: their name says what went wrong
        cudaErrorInsufficientDriver = 35

    with pytest.raises(RuntimeError, match=r"cudaGetDevice failed: cudaErrorInsufficientDriver \(35\)"):
        cuda_check((cudaError_t.cudaErrorInsufficientDriver, 0), "cudaGetDevice")


def test_format_parser_error():
    class ParserError:
        def desc(self):
            return "TensorRT does not support UINT8 types for intermediate tensors!"

        def node(self):
            return 0

        def node_name(self):
            return "node_permute"

        def node_operator(self):
            return "Transpose"

    line = format_parser_error(ParserError())
    assert line == "node 0 'node_permute' (Transpose): TensorRT does not support UINT8 types for intermediate tensors!"
    assert format_parser_error("plain message") == "plain message"


# --------------------------------------------------------------------------- ONNX pre-flight (UINT8 rule)

def test_uint8_preflight_accepts_contract_graphs(tmp_path):
    for graph in ("fused", "ir_only"):
        for make in (identity_graph, float_graph):
            path = tmp_path / f"{make.__name__}_{graph}.onnx"
            save_model(make(graph, H, W), path)
            assert uint8_intermediate_problems(path) == []


def test_uint8_preflight_flags_uint8_ops_before_the_cast(tmp_path):
    """What torch's exporter makes of `x.permute(...).float()` on a uint8 input."""
    nodes = [helper.make_node("Transpose", ["eo"], ["eo_t"], perm=[0, 3, 1, 2], name="node_permute"),
             helper.make_node("Cast", ["eo_t"], ["eo_f"], to=TensorProto.FLOAT, name="cast"),
             helper.make_node("ReduceMax", ["eo_f", "axes"], ["m"], keepdims=0, name="max"),
             helper.make_node("Cast", ["m"], ["mask"], to=TensorProto.UINT8, name="mask_u8"),
             helper.make_node("Identity", ["mask"], ["confidence"], name="conf")]
    g = helper.make_graph(nodes, "bad", [u8_info("eo", [1, H, W, 3])],
                          [u8_info("mask", [1, H, W]), u8_info("confidence", [1, H, W])],
                          [numpy_helper.from_array(np.array([1], np.int64), "axes")])
    path = tmp_path / "bad.onnx"
    save_model(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]), path)
    (problem,) = uint8_intermediate_problems(path)
    assert "node_permute" in problem and "Transpose" in problem and "'eo_t'" in problem


def test_uint8_preflight_flags_a_cast_to_uint8_from_int64(tmp_path):
    """TensorRT 10.3 casts to UINT8 only from FLOAT/HALF: ArgMax (int64) -> uint8 must go through float."""
    model = float_graph("ir_only", H, W)
    for node in model.graph.node:
        if node.name == "mask_u8":
            node.input[0] = "ids"  # the direct int64 -> uint8 cast the exporter made before
    path = tmp_path / "direct.onnx"
    save_model(model, path)
    (problem,) = uint8_intermediate_problems(path)
    assert "'mask_u8' casts INT64 tensor 'ids' to uint8" in problem and "FLOAT or HALF" in problem


def test_exported_bundle_passes_the_tensorrt_uint8_rule(tiny_bundle):
    """The real exporter's graphs (conftest's session bundle) must be parseable by TensorRT."""
    bundle = load_manifest(tiny_bundle)
    problems = [p for g in bundle.graphs.values() for p in uint8_intermediate_problems(g.path)]
    assert problems == []


def test_float_bundle_runs_under_onnxruntime(tmp_path):
    """The GPU tests' parity fixture is itself a valid bundle that ORT runs."""
    from csk_ros.backends import load_bundle

    seg = load_bundle(make_fake_bundle(tmp_path / "b", make=float_graph), backend="onnxruntime")
    rng = np.random.default_rng(1)
    mask, conf = seg.fused(rng.integers(0, 256, (H, W, 3), dtype=np.uint8), rng.integers(0, 256, (H, W), np.uint8))
    assert mask.dtype == conf.dtype == np.uint8 and mask.shape == conf.shape == (H, W)
    assert mask.max() < 4 and conf.min() >= 255 // 4


# --------------------------------------------------------------------------- calibration data

def test_calibration_batches_paired_folders(tmp_path):
    root = tmp_path / "calib"
    red_bgr = np.zeros((30, 40, 3), np.uint8)
    red_bgr[..., 2] = 200  # OpenCV writes BGR: this is red
    for i in range(3):
        write_image(root / "rgb" / f"f{i}.png", red_bgr)
        write_image(root / "thermal" / f"f{i}.png", np.full((30, 40), 16000 + 1000 * i, np.uint16))  # 16-bit raw
    write_image(root / "rgb" / "unpaired.png", red_bgr)
    feeds = list(calibration_batches(root, H, W, ("eo", "ir"), max_images=10,
                                     thermal={"mode": "fixed", "low": 16000, "high": 18000}))
    assert len(feeds) == 3  # only matched names
    for i, feed in enumerate(feeds):
        assert feed["eo"].shape == (1, H, W, 3) and feed["ir"].shape == (1, H, W)
        assert feed["eo"].dtype == feed["ir"].dtype == np.uint8 and feed["eo"].flags.c_contiguous
        assert (feed["eo"][..., 0] == 200).all() and (feed["eo"][..., 1:] == 0).all()  # RGB order
        assert abs(int(feed["ir"][0, 0, 0]) - round(255 * i / 2)) <= 1  # the bundle's thermal rule applied
    assert len(list(calibration_batches(root, H, W, ("eo", "ir"), max_images=2))) == 2
    ir_only = list(calibration_batches(root, H, W, ("ir",), max_images=10))
    assert len(ir_only) == 3 and set(ir_only[0]) == {"ir"}


def test_calibration_batches_packed_and_single_channel(tmp_path):
    packed = tmp_path / "mfnet"
    bgrt = np.zeros((24, 32, 4), np.uint8)
    bgrt[..., 0], bgrt[..., 3] = 50, 180  # blue, thermal
    write_image(packed / "00001D.png", bgrt)
    write_image(packed / "00002N.png", bgrt)
    feeds = list(calibration_batches(packed, H, W, ("eo", "ir"), 10))
    assert len(feeds) == 2
    assert (feeds[0]["eo"][..., 2] == 50).all() and (feeds[0]["eo"][..., :2] == 0).all()
    assert (feeds[0]["ir"] == 180).all()
    grey = tmp_path / "thermal_only"
    write_image(grey / "a.png", np.full((24, 32), 77, np.uint8))
    (feed,) = calibration_batches(grey, H, W, ("ir",), 10)
    assert (feed["ir"] == 77).all()
    with pytest.raises(ValueError, match="no colour channels"):
        list(calibration_batches(grey, H, W, ("eo", "ir"), 10))


def test_calibration_batches_errors(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        calibration_batches(tmp_path / "missing", H, W, ("ir",), 10)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no calibration images"):
        calibration_batches(tmp_path / "empty", H, W, ("ir",), 10)
    write_image(tmp_path / "only_ir" / "ir" / "a.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="need both an EO and an IR folder"):
        calibration_batches(tmp_path / "only_ir", H, W, ("eo", "ir"), 10)
    with pytest.raises(ValueError, match="inputs"):
        calibration_batches(tmp_path / "only_ir", H, W, ("depth",), 10)


# --------------------------------------------------------------------------- CLI and fallback without TensorRT

def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


@NO_TRT
def test_cli_without_tensorrt_exits_2_with_install_message_and_writes_nothing(bundle_dir):
    before = _snapshot(bundle_dir)
    result = run_build("--bundle", bundle_dir, "--precision", "fp16", "--workspace-mb", "512")
    assert result.returncode == 2, result.stderr
    # cuda-python pinned to the CUDA major version: 13.x fails on JetPack 6's CUDA 12.6 driver
    assert ("pip install tensorrt-cu12 'cuda-python>=12.6,<13'" in result.stderr
            and "python3-libnvinfer" in result.stderr)
    assert result.stdout.count("trtexec --onnx=") == 2 and "--memPoolSize=workspace:512M --fp16" in result.stdout
    assert _snapshot(bundle_dir) == before


@NO_TRT
def test_cli_int8_needs_calibration_images(bundle_dir, tmp_path):
    before = _snapshot(bundle_dir)
    result = run_build("--bundle", bundle_dir, "--precision", "int8")
    assert result.returncode == 1 and "--calib-images" in result.stderr
    result = run_build("--bundle", bundle_dir, "--precision", "int8", "--calib-images", tmp_path / "nope")
    assert result.returncode == 1 and "not found" in result.stderr
    assert _snapshot(bundle_dir) == before


def test_cli_rejects_bad_bundles_and_arguments(bundle_dir, tmp_path):
    result = run_build("--bundle", tmp_path / "nothing")
    assert result.returncode == 1 and "not found" in result.stderr
    result = run_build("--bundle", bundle_dir, "--graphs", "eo_only")
    assert result.returncode == 1 and "not in the bundle" in result.stderr
    # the Torch-TensorRT route is gone: it says why and how to build instead, and never imports torch_tensorrt
    for args in (("--via", "torch-tensorrt"), ("--via", "torch-tensorrt", "--checkpoint", "x"), ("--checkpoint", "x")):
        result = run_build("--bundle", bundle_dir, *args)
        assert result.returncode == 1 and "--via torch-tensorrt was removed" in result.stderr, result.stderr
        assert "output0" in result.stderr and "enabled_precisions" in result.stderr


def test_cli_preflight_rejects_uint8_intermediates(tmp_path):
    def bad(graph, h, w):
        model = identity_graph(graph, h, w)
        model.graph.node.insert(0, helper.make_node("Unsqueeze", ["ir", "ax"], ["ir4"], name="node_unsqueeze"))
        model.graph.node.insert(1, helper.make_node("Squeeze", ["ir4", "ax"], ["ir3"], name="node_squeeze"))
        for node in model.graph.node[2:]:
            node.input[0] = "ir3"
        model.graph.initializer.append(numpy_helper.from_array(np.array([1], np.int64), "ax"))
        return model

    bundle_dir = make_fake_bundle(tmp_path / "b", graphs=("ir_only",), make=bad)
    result = run_build("--bundle", bundle_dir)
    assert result.returncode == 1 and "node_unsqueeze" in result.stderr and "UINT8" in result.stderr


@NO_TRT
def test_load_bundle_tensorrt_missing_says_what_to_install(bundle_dir):
    from csk_ros.backends import load_bundle

    with pytest.raises(BundleError, match=r"pip install tensorrt-cu12 'cuda-python>=12\.6,<13'"):
        load_bundle(bundle_dir, backend="tensorrt")


@NO_TRT
def test_load_bundle_auto_falls_back_to_onnxruntime(bundle_dir):
    from csk_ros.backends import load_bundle

    logs = []
    seg = load_bundle(bundle_dir, backend="auto", log=logs.append)
    assert seg.backend_name == "onnxruntime"
    assert "TensorRT not available" in seg.fallback_reason and "pip install" in seg.fallback_reason
    assert seg.info["fallback_reason"] == seg.fallback_reason and "falling back" in logs[0]
    ir = np.arange(H * W, dtype=np.uint8).reshape(H, W)
    mask, conf = seg.ir_only(ir)
    assert (mask == ir).all() and (conf == ir).all()
    seg.close()


@NO_TRT
def test_building_without_tensorrt_raises_import_error_with_hint(bundle_dir):
    from csk_ros.backends.trt_build import build_engine_bytes
    from engines.trt_calibration import make_entropy_calibrator

    with pytest.raises(ImportError, match="tensorrt-cu12"):
        build_engine_bytes(bundle_dir / "ir_only.onnx", "fp16", 256)
    with pytest.raises(ImportError, match="tensorrt-cu12"):
        make_entropy_calibrator(bundle_dir, load_manifest(bundle_dir), "ir_only", bundle_dir / "c.calib")
    with pytest.raises(ValueError, match="calibrator"):
        build_engine_bytes(bundle_dir / "ir_only.onnx", "int8", 256)
    assert INSTALL_HINT in str(pytest.raises(ImportError, build_engine_bytes, bundle_dir / "x.onnx", "fp32").value)


@NO_TRT
def test_stub_only_tensorrt_counts_as_missing(tmp_path, monkeypatch):
    """tensorrt-stubs installed into site-packages leaves a `tensorrt` folder of .pyi files that imports
    as an empty namespace package: that is no TensorRT (the install hint), not an AttributeError later."""
    from csk_ros.backends.trt_build import import_tensorrt

    (tmp_path / "tensorrt").mkdir()
    (tmp_path / "tensorrt" / "__init__.pyi").write_text("class Builder: ...\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "tensorrt", raising=False)
    with pytest.raises(ImportError, match=r"has no bindings \(type stubs only.*tensorrt-cu12"):
        import_tensorrt()
    sys.modules.pop("tensorrt", None)


def test_rebuild_precision(bundle_dir):
    from csk_ros.backends.trt_build import rebuild_precision

    assert rebuild_precision(load_manifest(bundle_dir), "fused") == "fp16"
    _record(bundle_dir, graph="fused", precision="fp32")
    _record(bundle_dir, graph="fused", precision="int8")
    bundle = load_manifest(bundle_dir)
    assert rebuild_precision(bundle, "fused") == "fp32"  # int8 is never chosen implicitly
    assert rebuild_precision(bundle, "fused", "int8") == "int8"


# --------------------------------------------------------------------------- the TensorRT glue against a test double
#
# TensorRT cannot be installed on GPU-less machines, so the thin code that calls it
# (tensorrt_backend.TensorRTRunner, trt_build.build_engine_bytes, the entropy
# calibrator and the build CLI) is exercised here against a small stand-in that
# implements the TensorRT 10 / cuda-python surface we use, as documented (pybind
# definitions of tensorrt's Python API; cuda-python returning (error, value)
# tuples). Host and "device" memory are real ctypes buffers, so every copy and
# pointer hand-off in the runner really happens. It proves the glue's logic, not
# TensorRT's behaviour: test_tensorrt_gpu.py does that on a GPU.



FAKE_INFO = ("10.99.1", "Fake GPU 9000", "8.7", 16)  # TensorRT, GPU name, compute capability, SM count


@pytest.fixture
def fake_trt_path():
    """The test doubles' folder (tests/support/fake_tensorrt: `tensorrt`, `cuda.bindings.runtime`)."""
    return Path(__file__).resolve().parents[1] / "support" / "fake_tensorrt"


_FAKED = ("tensorrt", "cuda", "cuda.bindings", "cuda.bindings.runtime", "csk_ros.backends.tensorrt_backend")


def _purge():
    import csk_ros.backends

    for name in _FAKED:
        sys.modules.pop(name, None)
    if hasattr(csk_ros.backends, "tensorrt_backend"):
        delattr(csk_ros.backends, "tensorrt_backend")


@pytest.fixture
def fake_trt(fake_trt_path, monkeypatch):
    """Import the test doubles as `tensorrt` and `cuda.bindings.runtime` for one test."""
    if HAVE_TRT:
        pytest.skip("real TensorRT installed: the test double would shadow it")
    _purge()
    monkeypatch.syspath_prepend(str(fake_trt_path))
    import tensorrt

    assert tensorrt.MAGIC  # the double, not TensorRT
    yield tensorrt
    _purge()


def _fake_build(bundle_dir, graphs=("fused", "ir_only"), precision="fp16", **extra):
    from csk_ros.backends.trt_build import build_engine_bytes, inspect_engine_bytes

    bundle = load_manifest(bundle_dir)
    for graph in graphs:
        build_and_record(bundle, graph, precision, FAKE_INFO,
                         lambda rec: build_engine_bytes(rec.path, precision, 64, log=None),
                         inspect_fn=inspect_engine_bytes, log=None, **extra)
    return load_manifest(bundle_dir)


def test_glue_build_engine_bytes_sets_up_tensorrt_as_documented(bundle_dir, fake_trt):
    from csk_ros.backends.trt_build import build_engine_bytes, inspect_engine_bytes

    data = build_engine_bytes(bundle_dir / "fused.onnx", "fp16", 64, log=None)
    info = json.loads(data[len(fake_trt.MAGIC):])
    assert info["flags"] == ["FP16"] and info["pools"] == {"WORKSPACE": 64 << 20}
    assert inspect_engine_bytes(data) == expected_io(load_manifest(bundle_dir), "fused")
    fp32 = json.loads(build_engine_bytes(bundle_dir / "fused.onnx", "fp32", 64, log=None)[len(fake_trt.MAGIC):])
    assert fp32["flags"] == []
    with pytest.raises(EngineBuildError, match="could not be deserialized"):
        inspect_engine_bytes(b"garbage")


def test_glue_parser_errors_are_listed(tmp_path, fake_trt):
    from csk_ros.backends.trt_build import build_engine_bytes

    model = identity_graph("ir_only", H, W)
    model.graph.node.insert(0, helper.make_node("Unsqueeze", ["ir", "ax"], ["ir4"], name="node_unsqueeze"))
    model.graph.node.insert(1, helper.make_node("Squeeze", ["ir4", "ax"], ["ir3"], name="node_squeeze"))
    for node in model.graph.node[2:]:
        node.input[0] = "ir3"
    model.graph.initializer.append(numpy_helper.from_array(np.array([1], np.int64), "ax"))
    save_model(model, tmp_path / "bad.onnx")
    with pytest.raises(EngineBuildError) as info:
        build_engine_bytes(tmp_path / "bad.onnx", "fp16", 64)
    message = str(info.value)
    assert "node 0 'node_unsqueeze' (Unsqueeze): TensorRT does not support UINT8" in message
    assert "node 1 'node_squeeze' (Squeeze)" in message


def test_glue_parser_refuses_a_cast_to_uint8_from_int64(tmp_path, fake_trt):
    """The double holds TensorRT's documented rule (uint8 conversions only from float32/float16), so a
    graph the quantiser's ONNX Runtime optimisation folded (ArgMax -> Cast(uint8)) fails here too."""
    from csk_ros.backends.trt_build import build_engine_bytes

    model = float_graph("ir_only", H, W)
    for node in model.graph.node:
        if node.name == "mask_u8":
            node.input[0] = "ids"
    save_model(model, tmp_path / "folded.onnx")
    with pytest.raises(EngineBuildError, match=r"'mask_u8' \(Cast\): uint8 conversions are only supported"):
        build_engine_bytes(tmp_path / "folded.onnx", "fp16", 64, log=None)


def test_glue_tensorrt_without_weak_typing_flags_is_explained(bundle_dir, fake_trt, monkeypatch):
    """TensorRT 11 removed BuilderFlag.FP16/INT8 and calibrators: say so instead of an AttributeError."""
    from csk_ros.backends.trt_build import build_engine_bytes

    monkeypatch.delattr(fake_trt.BuilderFlag, "FP16")
    with pytest.raises(EngineBuildError, match="no FP16 builder precision flag.*TensorRT 11"):
        build_engine_bytes(bundle_dir / "ir_only.onnx", "fp16", 64)
    assert build_engine_bytes(bundle_dir / "ir_only.onnx", "fp32", 64, log=None).startswith(fake_trt.MAGIC)


def test_glue_build_failure_is_reported(bundle_dir, fake_trt, monkeypatch):
    from csk_ros.backends.trt_build import build_engine_bytes

    monkeypatch.setenv("FAKE_TRT_BUILD_FAILS", "1")
    with pytest.raises(EngineBuildError, match="could not build an engine"):
        build_engine_bytes(bundle_dir / "ir_only.onnx", "fp32", 64)


def test_glue_runner_loads_runs_and_shares_device_memory(bundle_dir, fake_trt):
    import cuda.bindings.runtime as cudart

    from csk_ros.backends import load_bundle
    from csk_ros.backends.tensorrt_backend import TensorRTRunner, tensorrt_runtime_info

    assert tensorrt_runtime_info() == FAKE_INFO  # NUL padding of the device name removed
    bundle = _fake_build(bundle_dir)
    live_before = len(cudart.LIVE)
    runner = TensorRTRunner(bundle, ("fused", "ir_only"))
    sizes = [json.loads(e.path.read_bytes()[len(fake_trt.MAGIC):])["mem"] for e in bundle.engines]
    assert runner.device_memory_bytes == max(sizes) and sizes[0] != sizes[1]
    contexts = runner._contexts
    assert contexts["fused"].memory == contexts["ir_only"].memory  # one block for both engines
    assert contexts["fused"].strategy is fake_trt.ExecutionContextAllocationStrategy.USER_MANAGED
    assert contexts["fused"].addresses["ir"] == contexts["ir_only"].addresses["ir"]  # shared I/O buffers
    assert runner.info["engines"] == {"fused": "fused.fp16.trt10.99.fake9000-16sm.engine",
                                      "ir_only": "ir_only.fp16.trt10.99.fake9000-16sm.engine"}
    ir = np.arange(H * W, dtype=np.uint8).reshape(1, H, W)
    eo = np.zeros((1, H, W, 3), np.uint8)
    mask, conf = runner.run("ir_only", {"ir": ir})
    assert (mask == ir).all() and (conf == 255 - ir).all() and mask.shape == (1, H, W)
    mask2, _ = runner.run("fused", {"eo": eo, "ir": ir[:, ::-1].copy()})
    assert (mask2 == ir[:, ::-1]).all() and (mask == ir).all()  # results are copies, not views of the buffers
    with pytest.raises(TypeError):
        runner.run("ir_only", {"ir": ir.astype(np.int16)})  # no silent casts
    runner.close()
    runner.close()
    assert len(cudart.LIVE) == live_before  # every buffer, the scratch block and the stream freed
    seg = load_bundle(bundle_dir, backend="auto")
    assert seg.backend_name == "tensorrt" and seg.fallback_reason is None
    assert seg.info["precision"] == {"fused": "fp16", "ir_only": "fp16"}
    seg.close()


def test_glue_runner_refuses_missing_stale_corrupt_and_wrong_engines(bundle_dir, fake_trt, tmp_path):
    from csk_ros.backends import load_bundle
    from csk_ros.backends.tensorrt_backend import TensorRTRunner

    with pytest.raises(BundleError, match="no TensorRT engine for graph 'fused'"):
        load_bundle(bundle_dir, backend="tensorrt")
    seg = load_bundle(bundle_dir, backend="auto")
    assert seg.backend_name == "onnxruntime" and "engines.build" in seg.fallback_reason
    _fake_build(bundle_dir)
    stale = json.loads((bundle_dir / "manifest.json").read_text())
    stale["engines"][0]["tensorrt_version"] = "10.0.0"
    (bundle_dir / "manifest.json").write_text(json.dumps(stale))
    with pytest.raises(BundleError, match="TensorRT 10.0.0, this machine runs 10.99.1"):
        TensorRTRunner(load_manifest(bundle_dir), ("fused", "ir_only"))
    _fake_build(bundle_dir)
    engine = next(e for e in load_manifest(bundle_dir).engines if e.graph == "ir_only")
    engine.path.write_bytes(b"\x00corrupt")
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    for rec in manifest["engines"]:
        if rec["graph"] == "ir_only":
            rec["sha256"] = sha256_of(engine.path)
    (bundle_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="ir_only.fp16.trt10.99.fake9000-16sm.engine could not be deserialized"):
        TensorRTRunner(load_manifest(bundle_dir), ("fused", "ir_only"))
    other = make_fake_bundle(tmp_path / "other", graphs=("ir_only",), h=4, w=6)
    _fake_build(other, graphs=("ir_only",))
    (other_engine,) = load_manifest(other).engines
    engine.path.write_bytes(other_engine.path.read_bytes())
    for rec in manifest["engines"]:
        if rec["graph"] == "ir_only":
            rec["sha256"] = sha256_of(engine.path)
    (bundle_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"tensor 'ir' is input uint8 \[1, 4, 6\], the manifest says input uint8"):
        TensorRTRunner(load_manifest(bundle_dir), ("fused", "ir_only"))


def test_glue_runner_rebuilds_stale_engines(bundle_dir, fake_trt):
    from csk_ros.backends import load_bundle

    _fake_build(bundle_dir, precision="fp32")
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    manifest["engines"][0]["onnx_sha256"] = "0" * 64  # fused engine came from another export
    (bundle_dir / "manifest.json").write_text(json.dumps(manifest))
    logs = []
    seg = load_bundle(bundle_dir, backend="tensorrt", rebuild=True, log=logs.append)
    assert seg.backend_name == "tensorrt" and seg.runner.info["rebuilt"] == ["fused"]
    engines = load_manifest(bundle_dir).engines
    assert len(engines) == 2 and all(e.precision == "fp32" for e in engines)  # replaced, same precision
    assert all(engine_problems(e, load_manifest(bundle_dir), *FAKE_INFO[:3]) == [] for e in engines)
    seg.close()


def test_glue_no_gpu_is_a_bundle_error(bundle_dir, fake_trt, monkeypatch):
    """Real trt.Runtime raises TypeError ("factory function returned nullptr") without CUDA, as the
    double does: the runner must ask CUDA first, so the message says what is wrong."""
    from csk_ros.backends import load_bundle

    _fake_build(bundle_dir)
    monkeypatch.setenv("FAKE_CUDA_NO_DEVICE", "1")
    with pytest.raises(TypeError, match="nullptr"):
        fake_trt.Runtime(fake_trt.Logger())
    with pytest.raises(BundleError, match="no usable CUDA GPU"):
        load_bundle(bundle_dir, backend="tensorrt")
    assert "no usable CUDA GPU" in load_bundle(bundle_dir, backend="auto").fallback_reason


def test_glue_tensorrt_objects_without_cuda_are_explained(bundle_dir, fake_trt, monkeypatch):
    """Builder / Runtime creation failing for want of CUDA is an EngineBuildError naming what to check
    (engines.build reports it in one line), never a bare TypeError; other TypeErrors stay themselves."""
    from csk_ros.backends.trt_build import build_engine_bytes, create_tensorrt, inspect_engine_bytes

    data = build_engine_bytes(bundle_dir / "ir_only.onnx", "fp32", 64, log=None)
    monkeypatch.setenv("FAKE_CUDA_NO_DEVICE", "1")
    with pytest.raises(EngineBuildError, match=r"could not create its Builder .*nullptr.*nvidia-smi"):
        build_engine_bytes(bundle_dir / "ir_only.onnx", "fp32", 64, log=None)
    with pytest.raises(EngineBuildError, match="could not create its Runtime"):
        inspect_engine_bytes(data)

    def wrong_arguments(logger):
        raise TypeError("__init__(): incompatible constructor arguments")

    with pytest.raises(TypeError, match="incompatible"):
        create_tensorrt(wrong_arguments, None, "Builder")


@NO_TRT
def test_glue_cli_without_a_driver_does_not_blame_cuda_python(bundle_dir, fake_trt_path):
    """cuda-bindings return cudaErrorInsufficientDriver (35) also when no driver is installed: the
    'pin cuda-python' advice is for a driver older than cuda-python's CUDA only."""
    result = _run_fake_build(fake_trt_path, "--bundle", bundle_dir, "--env", "FAKE_CUDA_NO_DRIVER=1")
    assert result.returncode == 1, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "no usable CUDA GPU" in line and "no NVIDIA driver is installed" in line and "cuda-python>=" not in line
    result = _run_fake_build(fake_trt_path, "--bundle", bundle_dir, "--env", "FAKE_CUDA_OLD_DRIVER=1")
    assert result.returncode == 1 and "newer than this driver's CUDA 12.6: install 'cuda-python>=12.6,<13'" in \
        result.stderr


def test_glue_runner_takes_the_stream_handle_the_documented_way(bundle_dir, fake_trt, monkeypatch):
    """int(cudaStream_t) is deprecated (cuda-bindings 12.8 on; JetPack 7 pins 13.x): the runner uses
    cuda.bindings.utils.get_cuda_native_handle, and int() only where that does not exist."""
    import warnings

    import csk_ros.backends.tensorrt_backend as backend

    runner = backend.TensorRTRunner(_fake_build(bundle_dir), ("ir_only",))
    ir = np.arange(H * W, dtype=np.uint8).reshape(1, H, W)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        mask, _ = runner.run("ir_only", {"ir": ir})
    assert (mask == ir).all()
    runner.close()
    monkeypatch.setitem(sys.modules, "cuda.bindings.utils", None)  # an older cuda-python
    assert backend._native_handle() is int


def test_glue_one_tensorrt_logger_per_process(bundle_dir, fake_trt):
    """TensorRT keeps one global logger and warns when a Builder or Runtime gets another: building,
    inspecting, loading and a runtime rebuild all hand it the same one."""
    from csk_ros.backends.tensorrt_backend import TensorRTRunner

    bundle = _fake_build(bundle_dir, precision="fp32")
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    manifest["engines"][0]["onnx_sha256"] = "0" * 64  # forces a rebuild at start-up
    (bundle_dir / "manifest.json").write_text(json.dumps(manifest))
    runner = TensorRTRunner(load_manifest(bundle_dir), ("fused", "ir_only"), rebuild=True, log=None)
    assert runner.info["rebuilt"] == ["fused"] and bundle.engines
    runner.close()
    assert not [line for line in fake_trt.LOG if "differs" in line]


def test_glue_fp16_flag_deprecation_is_explained(bundle_dir, fake_trt, monkeypatch):
    from csk_ros.backends.trt_build import build_engine_bytes

    logs = []
    build_engine_bytes(bundle_dir / "ir_only.onnx", "fp16", 64, log=logs.append)  # the double says 10.99
    assert any("BuilderFlag.FP16 (weak typing) is deprecated since TensorRT 10.12" in line for line in logs)
    monkeypatch.setattr(fake_trt, "__version__", "10.3.0")
    logs.clear()
    build_engine_bytes(bundle_dir / "ir_only.onnx", "fp16", 64, log=logs.append)
    assert not any("deprecated" in line for line in logs)


@pytest.mark.parametrize("version, flags, precision, quantized, plan", [
    ("10.3.0", True, "int8", True, (False, ("FP16", "INT8"))),
    ("10.11.9", True, "int8", True, (False, ("FP16", "INT8"))),
    ("10.12.0", True, "int8", True, (True, ())),
    ("10.16.1", True, "int8", True, (True, ())),
    ("11.0.0", False, "int8", True, (True, ())),
    ("10.16.1", True, "fp16", False, (False, ("FP16",))),
    ("10.16.1", True, "int8", False, (False, ("FP16", "INT8"))),
    ("11.0.0", False, "fp32", False, (False, ())),
])
def test_build_plan_follows_the_tensorrt_deprecations(version, flags, precision, quantized, plan):
    from csk_ros.backends.trt_build import build_plan

    assert build_plan(version, flags, True, flags, precision, quantized)[:2] == plan


def test_build_plan_refuses_what_tensorrt_11_removed():
    from csk_ros.backends.trt_build import build_plan

    with pytest.raises(EngineBuildError, match="no FP16 builder precision flag .*TensorRT 11 removed"):
        build_plan("11.0.0", False, True, False, "fp16", False)
    with pytest.raises(EngineBuildError, match="no INT8 calibrator"):
        build_plan("10.16.0", True, True, False, "int8", False)


def test_glue_calibration_cache_failures_are_reported_not_lost(bundle_dir, fake_trt, tmp_path, monkeypatch):
    """Real TensorRT swallows exceptions raised in read_/write_calibration_cache (the double too): the
    calibrator records them and the build logs them, so a read-only bundle does not lose its cache silently."""
    from csk_ros.backends.trt_build import build_engine_bytes
    from engines.trt_calibration import make_entropy_calibrator

    images = tmp_path / "calib"
    for i in range(2):
        write_image(images / "ir" / f"{i}.png", np.full((20, 30), 3, np.uint8))
    (tmp_path / "not_a_folder").write_bytes(b"")
    cache = tmp_path / "not_a_folder" / "ir_only.calib"  # cannot be written (a read-only bundle, as root)
    cal = make_entropy_calibrator(images, load_manifest(bundle_dir), "ir_only", cache)
    logs = []
    info = json.loads(build_engine_bytes(bundle_dir / "ir_only.onnx", "int8", 64, cal, log=logs.append)[16:])
    cal.free()
    assert info["calibrated_batches"] == 2 and len(cal.cache_errors) == 1
    assert any(line.startswith("warning: could not write the INT8 calibration cache") for line in logs)
    cal = make_entropy_calibrator(images, load_manifest(bundle_dir), "ir_only", tmp_path / "other.calib")
    monkeypatch.setattr(type(cal), "write_calibration_cache", lambda self, cache: 1 / 0)
    assert build_engine_bytes(bundle_dir / "ir_only.onnx", "int8", 64, cal, log=None)  # the double swallows too
    cal.free()
    assert any("swallowed: ZeroDivisionError" in line for line in fake_trt.LOG)
    readable = tmp_path / "ir_only.calib"
    readable.write_bytes(b"fake calibration table")
    cal = make_entropy_calibrator(images, load_manifest(bundle_dir), "ir_only", readable)
    real_read = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: (_ for _ in ()).throw(PermissionError("denied"))
                        if self == readable else real_read(self))
    logs.clear()
    info = json.loads(build_engine_bytes(bundle_dir / "ir_only.onnx", "int8", 64, cal, log=logs.append)[16:])
    cal.free()
    assert info["calibrated_batches"] == 2 and not info["used_cache"]
    assert any("could not read the INT8 calibration cache" in line and "PermissionError" in line for line in logs)


def test_glue_refused_tensor_address_is_a_bundle_error(bundle_dir, fake_trt, monkeypatch):
    """IExecutionContext.set_tensor_address returns False when TensorRT refuses an address: the runner
    must not run with a tensor unbound."""
    from csk_ros.backends import load_bundle

    _fake_build(bundle_dir)
    monkeypatch.setenv("FAKE_TRT_REFUSE_ADDRESS", "mask")
    with pytest.raises(BundleError, match="refused the device address of tensor 'mask'"):
        load_bundle(bundle_dir, backend="tensorrt")
    assert "refused the device address" in load_bundle(bundle_dir, backend="auto").fallback_reason


@NO_TRT
def test_glue_gpu_check_tables_parity_latency_and_build_time(bundle_dir, fake_trt_path, tmp_path):
    """engines.gpu_check on the double: fp16 engines agree with ONNX Runtime (exit 0, table + JSON);
    INT8 engines whose output differs from their Q/DQ source graph are a parity failure (exit 1)."""
    env = dict(os.environ, PYTHONPATH=f"{fake_trt_path}{os.pathsep}{REPO}")

    def gpu_check(*args):
        return subprocess.run([sys.executable, "-m", "engines.gpu_check", "--bundle", str(bundle_dir), "--runs", "3",
                               *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)

    result = gpu_check("--precisions", "fp16", "--json", str(tmp_path / "fp16.json"))
    assert result.returncode == 0, result.stderr
    assert "| tensorrt | fp16 | ir_only | 100.00 % |" in result.stdout and "| onnxruntime-cpu | fp32 |" in result.stdout
    rows = json.loads((tmp_path / "fp16.json").read_text())["rows"]
    assert {(r["backend"], r["graph"]) for r in rows} == {(b, g) for b in ("tensorrt", "onnxruntime-cpu")
                                                          for g in ("fused", "ir_only")}
    assert all(r["p95_ms"] >= r["median_ms"] > 0 for r in rows)
    assert all(r["build_s"] is not None for r in rows if r["backend"] == "tensorrt")
    add_qdq_records(bundle_dir)  # the double's engines copy IR through; the Q/DQ graphs compute classes
    result = gpu_check("--precisions", "int8")
    assert result.returncode == 1 and "parity failure" in result.stderr and "int8" in result.stderr
    assert "FAILED" in result.stdout


def test_cuda_driver_hint():
    from csk_ros.backends.trt_build import cuda_driver_hint

    assert "no NVIDIA driver is installed" in cuda_driver_hint("cudaErrorInsufficientDriver (35)", 0, 13050)
    assert "cuda-python" not in cuda_driver_hint("cudaErrorInsufficientDriver (35)", 0, 12090)
    pin = cuda_driver_hint("cudaErrorInsufficientDriver (35)", 12060, 13050)
    assert "CUDA 13.5) is newer than this driver's CUDA 12.6: install 'cuda-python>=12.6,<13'" in pin
    assert "update the driver" in cuda_driver_hint("cudaErrorInsufficientDriver (35)", 12020, 12090)
    assert cuda_driver_hint("cudaErrorNoDevice (100)", 12060, 12090) == ""


def test_glue_entropy_calibrator_feeds_real_images(bundle_dir, fake_trt, tmp_path):
    from csk_ros.backends.trt_build import build_engine_bytes
    from engines.trt_calibration import make_entropy_calibrator

    images = tmp_path / "calib"
    for i in range(5):
        write_image(images / "vi" / f"{i}.png", np.full((20, 30, 3), 10, np.uint8))
        write_image(images / "ir" / f"{i}.png", np.full((20, 30), 3, np.uint8))
    bundle = load_manifest(bundle_dir)
    cache = tmp_path / "fused.calib"
    cal = make_entropy_calibrator(images, bundle, "fused", cache, max_images=4)
    info = json.loads(build_engine_bytes(bundle_dir / "fused.onnx", "int8", 64, cal, log=None)[16:])
    cal.free()
    assert info["flags"] == ["FP16", "INT8"] and info["calibrated_batches"] == 4 and not info["used_cache"]
    assert info["calibration_sum"] == 4 * (H * W * 3 * 10 + H * W * 3)  # the uint8 images reached the device
    assert cache.read_bytes() == b"fake calibration table"
    cal = make_entropy_calibrator(tmp_path / "no-images-needed", bundle, "fused", cache)
    info = json.loads(build_engine_bytes(bundle_dir / "fused.onnx", "int8", 64, cal, log=None)[16:])
    assert info["used_cache"] and info["calibrated_batches"] == 0


def _run_fake_build(fake_trt_path, *args):
    """engines.build with the test doubles; `--env NAME=VALUE` pairs among `args` set the child's environment."""
    args, extra = list(map(str, args)), {}
    while "--env" in args:
        at = args.index("--env")
        name, _, value = args[at + 1].partition("=")
        extra[name] = value
        del args[at:at + 2]
    env = dict(os.environ, PYTHONPATH=f"{fake_trt_path}{os.pathsep}{REPO}", **extra)
    return subprocess.run([sys.executable, "-m", "engines.build", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


@NO_TRT
def test_glue_cli_builds_and_records_every_graph(bundle_dir, fake_trt_path):
    result = _run_fake_build(fake_trt_path, "--bundle", bundle_dir, "--precision", "fp32", "--workspace-mb", "128")
    assert result.returncode == 0, result.stderr
    assert "TensorRT 10.99.1 on Fake GPU 9000 (sm 8.7, 16 SMs)" in result.stdout
    engine_dir = bundle_dir.resolve()
    assert f"--saveEngine={engine_dir / 'fused.fp32.trt10.99.fake9000-16sm.engine'}" in result.stdout
    bundle = load_manifest(bundle_dir)
    assert sorted((e.graph, e.precision) for e in bundle.engines) == [("fused", "fp32"), ("ir_only", "fp32")]
    assert all(engine_problems(e, bundle, *FAKE_INFO[:3]) == [] for e in bundle.engines)
    raw = json.loads((bundle_dir / "manifest.json").read_text())["engines"]
    assert all(r["via"] == "tensorrt" and r["workspace_mb"] == 128 for r in raw)


@NO_TRT
def test_glue_cli_int8_calibrates_then_reuses_the_cache(bundle_dir, fake_trt_path, tmp_path):
    images = tmp_path / "calib"
    for i in range(3):
        write_image(images / f"{i}.png", np.full((20, 30, 4), 9, np.uint8))  # MFNet-style RGB+T
    result = _run_fake_build(fake_trt_path, "--bundle", bundle_dir, "--precision", "int8", "--calib-images", images)
    assert result.returncode == 0, result.stderr
    bundle = load_manifest(bundle_dir)
    caches = {g: calibration_cache_path(bundle, g) for g in ("fused", "ir_only")}
    assert all(p.read_bytes() == b"fake calibration table" for p in caches.values())
    for e in bundle.engines:
        info = json.loads(e.path.read_bytes()[16:])
        assert e.precision == "int8" and info["calibrated_batches"] == 3
    assert all(f"--calib={caches[g]}" in result.stdout for g in caches)
    result = _run_fake_build(fake_trt_path, "--bundle", bundle_dir, "--precision", "int8")  # cache only
    assert result.returncode == 0, result.stderr
    assert all(json.loads(e.path.read_bytes()[16:])["used_cache"] for e in load_manifest(bundle_dir).engines)


# --------------------------------------------------------------------------- calibration contract, explicit INT8, SMs

def test_glue_calibration_stops_early_is_an_error(bundle_dir, fake_trt, tmp_path):
    """TensorRT swallows an exception from get_batch and ends calibration as if the data
    had run out: the calibrator must notice it got fewer batches than it was given."""
    from csk_ros.backends.trt_build import build_engine_bytes
    from engines.trt_calibration import make_entropy_calibrator

    images = tmp_path / "calib"
    for i in range(4):
        write_image(images / "vi" / f"{i}.png", np.full((20, 30, 3), 10, np.uint8))
        write_image(images / "ir" / f"{i}.png", np.full((20, 30), 3, np.uint8))
    (images / "ir" / "2.png").write_bytes(b"not a png")  # the third sample cannot be read
    cache = tmp_path / "fused.calib"
    cal = make_entropy_calibrator(images, load_manifest(bundle_dir), "fused", cache)
    with pytest.raises(EngineBuildError, match=r"calibration of 'fused' failed at batch 3 of 4: ValueError: cannot "
                                               r"read calibration image"):
        build_engine_bytes(bundle_dir / "fused.onnx", "int8", 64, cal, log=None)
    cal.free()


def test_glue_rejected_cache_without_images_is_an_error(bundle_dir, fake_trt, tmp_path, monkeypatch):
    """A cache TensorRT does not accept (other version) and no images: calibration on zero batches."""
    from csk_ros.backends.trt_build import build_engine_bytes
    from engines.trt_calibration import make_entropy_calibrator

    cache = tmp_path / "ir_only.calib"
    cache.write_bytes(b"cache from another TensorRT")
    cal = make_entropy_calibrator(None, load_manifest(bundle_dir), "ir_only", cache)
    monkeypatch.setattr(type(cal), "read_calibration_cache", lambda self: None)  # TensorRT rejected it
    with pytest.raises(EngineBuildError, match=r"ran on 0 of 0 batches: its calibration cache was rejected"):
        build_engine_bytes(bundle_dir / "ir_only.onnx", "int8", 64, cal, log=None)


def test_glue_rejected_cache_with_images_calibrates_on_the_images(bundle_dir, fake_trt, tmp_path, monkeypatch):
    """After a TensorRT upgrade the old cache is rejected: the images given must be used, not reported missing."""
    from csk_ros.backends.trt_build import build_engine_bytes
    from engines.trt_calibration import make_entropy_calibrator

    images = tmp_path / "calib"
    for i in range(3):
        write_image(images / "ir" / f"{i}.png", np.full((20, 30), 3, np.uint8))
    cache = tmp_path / "ir_only.calib"
    cache.write_bytes(b"cache from another TensorRT")
    cal = make_entropy_calibrator(images, load_manifest(bundle_dir), "ir_only", cache)
    monkeypatch.setattr(type(cal), "read_calibration_cache", lambda self: None)  # TensorRT rejected it
    info = json.loads(build_engine_bytes(bundle_dir / "ir_only.onnx", "int8", 64, cal, log=None)[16:])
    cal.free()
    assert info["calibrated_batches"] == 3 and not info["used_cache"]


def test_glue_int8_from_qdq_graphs_needs_no_calibrator(bundle_dir, fake_trt, monkeypatch):
    """Explicit quantization: the Q/DQ graph is the source, no calibrator; TensorRT 10.0-10.11 gets
    INT8 + FP16 (the rest may run in fp16), 10.12 on (weak typing deprecated) a strongly typed
    network without the deprecated flags; the record carries the Q/DQ graph's hash."""
    from csk_ros.backends.tensorrt_backend import TensorRTRunner
    from csk_ros.backends.trt_build import build_engine_bytes, inspect_engine_bytes

    add_qdq_records(bundle_dir)
    bundle = load_manifest(bundle_dir)
    logs, version = [], fake_trt.__version__
    monkeypatch.setattr(fake_trt, "__version__", "10.3.0")  # JetPack 6
    data = build_engine_bytes(bundle.quantized["ir_only"].path, "int8", 64, log=logs.append, quantized=True)
    info = json.loads(data[len(fake_trt.MAGIC):])
    assert info["flags"] == ["FP16", "INT8"] and info["explicit_quantization"] and not info["calibrator_ignored"]
    assert not info["strongly_typed"] and "from Q/DQ scales" in logs[-1]
    monkeypatch.setattr(fake_trt, "__version__", "10.16.0")  # JetPack 7.2: BuilderFlag.FP16/INT8 deprecated
    data = build_engine_bytes(bundle.quantized["ir_only"].path, "int8", 64, log=logs.append, quantized=True)
    info = json.loads(data[len(fake_trt.MAGIC):])
    assert info["strongly_typed"] and info["flags"] == [] and info["explicit_quantization"]
    assert any("weak typing is deprecated in TensorRT 10.16.0" in line for line in logs)
    monkeypatch.setattr(fake_trt, "__version__", version)
    for graph in ("fused", "ir_only"):
        build_and_record(bundle, graph, "int8", FAKE_INFO, lambda rec: build_engine_bytes(
            rec.path, "int8", 64, log=None, quantized=True), inspect_fn=inspect_engine_bytes, log=None)
    bundle = load_manifest(bundle_dir)
    raw = json.loads((bundle_dir / "manifest.json").read_text())["engines"]
    assert {r["quantization"] for r in raw} == {"explicit-qdq"} and {r["sm_count"] for r in raw} == {16}
    for engine in bundle.engines:
        assert engine.onnx_sha256 == bundle.quantized[engine.graph].sha256 != bundle.graphs[engine.graph].sha256
        assert engine_problems(engine, bundle, *FAKE_INFO[:3]) == []
    runner = TensorRTRunner(bundle, ("fused", "ir_only"))
    assert runner.info["precision"] == {"fused": "int8", "ir_only": "int8"}
    runner.close()


def test_glue_qdq_int8_without_precision_flags_builds_strongly_typed(bundle_dir, fake_trt, monkeypatch):
    """TensorRT 11 has no INT8/FP16 flags: a Q/DQ graph still builds, strongly typed."""
    from csk_ros.backends.trt_build import build_engine_bytes

    add_qdq_records(bundle_dir, ("ir_only",))
    monkeypatch.delattr(fake_trt.BuilderFlag, "FP16")
    monkeypatch.delattr(fake_trt.BuilderFlag, "INT8")
    logs = []
    data = build_engine_bytes(bundle_dir / "ir_only.int8.onnx", "int8", 64, log=logs.append, quantized=True)
    info = json.loads(data[len(fake_trt.MAGIC):])
    assert info["strongly_typed"] and info["flags"] == [] and info["explicit_quantization"]
    assert any("strongly typed" in line for line in logs)
    with pytest.raises(EngineBuildError, match="TensorRT 11"):  # the calibrator fallback cannot run there
        build_engine_bytes(bundle_dir / "ir_only.onnx", "int8", 64, calibrator=object(), log=None)


@NO_TRT
def test_glue_cli_int8_uses_qdq_graphs_and_calibrates_only_the_rest(bundle_dir, fake_trt_path, tmp_path):
    add_qdq_records(bundle_dir, ("ir_only",))
    result = _run_fake_build(fake_trt_path, "--bundle", bundle_dir, "--precision", "int8")
    assert result.returncode == 1 and "fused has no Q/DQ graph" in result.stderr and "--calib-images" in result.stderr
    images = tmp_path / "calib"
    for i in range(3):
        write_image(images / f"{i}.png", np.full((20, 30, 4), 9, np.uint8))
    result = _run_fake_build(fake_trt_path, "--bundle", bundle_dir, "--precision", "int8", "--calib-images", images)
    assert result.returncode == 0, result.stderr
    bundle = load_manifest(bundle_dir)
    engines = {e.graph: e for e in bundle.engines}
    ir_info = json.loads(engines["ir_only"].path.read_bytes()[16:])
    fused_info = json.loads(engines["fused"].path.read_bytes()[16:])
    assert ir_info["explicit_quantization"] and "calibrated_batches" not in ir_info
    assert fused_info["calibrated_batches"] == 3
    assert engines["ir_only"].onnx_sha256 == bundle.quantized["ir_only"].sha256
    assert engines["fused"].onnx_sha256 == bundle.graphs["fused"].sha256
    assert "--onnx=" + str(bundle.quantized["ir_only"].path) in result.stdout
    assert not calibration_cache_path(bundle, "ir_only").exists() and calibration_cache_path(bundle, "fused").exists()
    assert "TensorRT 10 only" in result.stderr


def test_glue_sm_count_is_part_of_the_engine_key(bundle_dir, fake_trt, monkeypatch):
    """Orin modules share a name: an engine built on a 16-SM GPU is not used on a 14-SM
    one; records from before the SM count was recorded are refused with a clear reason."""
    from csk_ros.backends import load_bundle
    from csk_ros.backends.tensorrt_backend import TensorRTRunner

    bundle = _fake_build(bundle_dir, precision="fp32")
    monkeypatch.setenv("FAKE_CUDA_SM_COUNT", "14")
    with pytest.raises(BundleError, match="built for a Fake GPU 9000 with 16 SMs, this one has 14"):
        TensorRTRunner(bundle, ("fused", "ir_only"))
    seg = load_bundle(bundle_dir, backend="tensorrt", rebuild=True, log=None)  # rebuilt beside the 16-SM ones
    assert seg.runner.info["sm_count"] == 14 and seg.runner.info["rebuilt"] == ["fused", "ir_only"]
    seg.close()
    raw = json.loads((bundle_dir / "manifest.json").read_text())["engines"]
    assert sorted(r["sm_count"] for r in raw) == [14, 14, 16, 16]
    assert {r["file"] for r in raw if r["sm_count"] == 14} == {"fused.fp32.trt10.99.fake9000-14sm.engine",
                                                               "ir_only.fp32.trt10.99.fake9000-14sm.engine"}
    for rec in raw:
        del rec["sm_count"]  # a manifest written before csk_ros recorded SM counts still loads ...
    (bundle_dir / "manifest.json").write_text(json.dumps({**json.loads((bundle_dir / "manifest.json").read_text()),
                                                          "engines": raw}))
    with pytest.raises(BundleError, match="recorded without the GPU's SM count .* rebuild it here"):
        TensorRTRunner(load_manifest(bundle_dir), ("ir_only",))  # ... but its engines are not trusted blindly


def test_glue_cuda_python_newer_than_the_driver_says_which_to_pin(bundle_dir, fake_trt, monkeypatch):
    from csk_ros.backends import load_bundle

    monkeypatch.setenv("FAKE_CUDA_OLD_DRIVER", "1")
    seg = load_bundle(bundle_dir, backend="auto")
    assert seg.backend_name == "onnxruntime" and "cuda-python>=12.6,<13" in seg.fallback_reason


def test_rebuild_precision_keeps_int8_only_with_a_qdq_graph(bundle_dir):
    from csk_ros.backends.trt_build import rebuild_precision

    _record(bundle_dir, graph="ir_only", precision="int8")
    assert rebuild_precision(load_manifest(bundle_dir), "ir_only") == "fp16"  # calibrator int8: no images here
    add_qdq_records(bundle_dir, ("ir_only",))
    assert rebuild_precision(load_manifest(bundle_dir), "ir_only") == "int8"


@NO_TRT
def test_cli_refuses_int8_from_the_onnxruntime_flavour_of_qdq(bundle_dir, fake_trt_path):
    """engines.quantize's default graphs (asymmetric uint8 activations) are for ONNX Runtime; TensorRT's
    explicit quantization takes symmetric int8 only, and a calibrated engine would not match the
    int8 source the bundle names: refuse with the fix."""
    add_qdq_records(bundle_dir, ("ir_only",))
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    manifest["quantized"]["ir_only"]["tensorrt_compatible"] = False
    (bundle_dir / "manifest.json").write_text(json.dumps(manifest))
    before = _snapshot(bundle_dir)
    result = _run_fake_build(fake_trt_path, "--bundle", bundle_dir, "--precision", "int8", "--graphs", "ir_only")
    assert result.returncode == 1 and "ir_only.int8.onnx is the ONNX Runtime flavour" in result.stderr
    assert "--activations int8-symmetric" in result.stderr and _snapshot(bundle_dir) == before
    from csk_ros.backends.trt_build import rebuild_precision

    _record(bundle_dir, graph="ir_only", precision="int8")
    assert rebuild_precision(load_manifest(bundle_dir), "ir_only") == "fp16"


def test_glue_runner_rebuilds_int8_from_the_qdq_graph_without_images(bundle_dir, fake_trt):
    """A node starting with rebuild on a bundle with Q/DQ graphs rebuilds its stale INT8 engines
    (no calibration images needed) and records them against the Q/DQ graphs."""
    from csk_ros.backends.tensorrt_backend import TensorRTRunner
    from csk_ros.backends.trt_build import build_engine_bytes, inspect_engine_bytes

    add_qdq_records(bundle_dir)
    bundle = load_manifest(bundle_dir)
    for graph in ("fused", "ir_only"):
        build_and_record(bundle, graph, "int8", FAKE_INFO[:3], lambda rec: build_engine_bytes(
            rec.path, "int8", 64, log=None, quantized=True), inspect_fn=inspect_engine_bytes, log=None)
    runner = TensorRTRunner(load_manifest(bundle_dir), ("fused", "ir_only"), rebuild=True, log=None)
    assert runner.info["rebuilt"] == ["fused", "ir_only"]  # the old records had no SM count
    assert runner.info["precision"] == {"fused": "int8", "ir_only": "int8"}
    runner.close()
    bundle = load_manifest(bundle_dir)
    fresh = [e for e in bundle.engines if e.path.name.endswith("-16sm.engine")]
    assert len(fresh) == 2 and all(e.onnx_sha256 == bundle.quantized[e.graph].sha256 for e in fresh)
    assert all(json.loads(e.path.read_bytes()[16:])["explicit_quantization"] for e in fresh)
