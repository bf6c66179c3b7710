"""Real TensorRT: build, load, infer, parity with ONNX Runtime, shared device
memory, corrupt/stale engines and the `auto` fallback, INT8 from Q/DQ graphs
(explicit quantization) and by calibration (float32 batches; TensorRT 10 only).
Everything here needs the TensorRT Python bindings,
cuda-python and a CUDA GPU, and is skipped (with the reason) elsewhere; the
GPU-free parts of the same code are tested in test_trt_build.py."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

trt = pytest.importorskip("tensorrt", reason="TensorRT Python bindings are not installed (GPU machines only: "
                          "pip install tensorrt-cu12 'cuda-python<13', or JetPack's python3-libnvinfer)")

from tests.support.trt_fixtures import cudart_with_a_gpu  # noqa: E402

cudart_with_a_gpu()  # or the whole module is skipped, saying why

from csk_ros.backends import load_bundle  # noqa: E402
from csk_ros.backends.engine_check import select_engine  # noqa: E402
from csk_ros.backends.tensorrt_backend import TensorRTRunner, tensorrt_runtime_info  # noqa: E402
from csk_ros.backends.trt_build import build_and_record, build_engine_bytes, inspect_engine_bytes, tensorrt_logger  # noqa: E402,E501
from csk_ros.bundle import BundleError, load_manifest, sha256_of  # noqa: E402
from tests.support.trt_fixtures import add_qdq_records, float_graph, make_fake_bundle, run_build  # noqa: E402

H, W = 64, 80


def random_frames(seed, n=4):
    rng = np.random.default_rng(seed)
    return [(rng.integers(0, 256, (H, W, 3), dtype=np.uint8), rng.integers(0, 256, (H, W), dtype=np.uint8))
            for _ in range(n)]


@pytest.fixture
def bundle_dir(tmp_path):
    return make_fake_bundle(tmp_path / "bundle", h=H, w=W, make=float_graph)


def build(bundle_dir, precision="fp32"):
    bundle = load_manifest(bundle_dir)
    info = tensorrt_runtime_info()
    for graph in ("fused", "ir_only"):
        build_and_record(bundle, graph, precision, info,
                         lambda rec, p=precision: build_engine_bytes(rec.path, p, 256, log=None),
                         inspect_fn=inspect_engine_bytes, log=None)
    return load_manifest(bundle_dir)


def test_runtime_info_names_this_gpu():
    version, gpu, cc, sm_count = tensorrt_runtime_info()
    assert version == trt.__version__ and gpu and "\x00" not in gpu
    major, minor = cc.split(".")
    assert int(major) >= 5 and minor.isdigit() and sm_count >= 1


def test_cli_builds_records_and_the_runtime_matches_onnxruntime(bundle_dir):
    result = run_build("--bundle", bundle_dir, "--precision", "fp32", "--workspace-mb", "256")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("trtexec --onnx=") == 2
    bundle = load_manifest(bundle_dir)
    info = tensorrt_runtime_info()
    assert {e.graph for e in bundle.engines} == {"fused", "ir_only"}
    for engine in bundle.engines:
        assert (engine.tensorrt_version, engine.gpu_name, engine.compute_capability) == info[:3]
        assert engine.onnx_sha256 == bundle.graphs[engine.graph].sha256 and engine.sha256 == sha256_of(engine.path)
    trt_seg = load_bundle(bundle_dir, backend="tensorrt")
    ort_seg = load_bundle(bundle_dir, backend="onnxruntime")
    assert trt_seg.backend_name == "tensorrt" and trt_seg.fallback_reason is None
    assert trt_seg.info["precision"] == {"fused": "fp32", "ir_only": "fp32"}
    for eo, ir in random_frames(0):
        for a, b in ((trt_seg.fused(eo, ir), ort_seg.fused(eo, ir)), (trt_seg.ir_only(ir), ort_seg.ir_only(ir))):
            assert a[0].dtype == a[1].dtype == np.uint8 and a[0].shape == (H, W)
            assert (a[0] == b[0]).mean() >= 0.999  # argmax ties aside, identical
            assert np.abs(a[1].astype(int) - b[1].astype(int)).max() <= 1
    trt_seg.close()
    trt_seg.close()  # idempotent


def test_fp16_engine_parity(bundle_dir):
    build(bundle_dir, "fp16")
    trt_seg = load_bundle(bundle_dir, backend="tensorrt")
    ort_seg = load_bundle(bundle_dir, backend="onnxruntime")
    for eo, ir in random_frames(1):
        (m1, c1), (m2, c2) = trt_seg.fused(eo, ir), ort_seg.fused(eo, ir)
        assert (m1 == m2).mean() >= 0.98
        assert np.percentile(np.abs(c1.astype(int) - c2.astype(int)), 99) <= 2
    trt_seg.close()


def test_engines_share_one_device_memory_block(bundle_dir):
    bundle = build(bundle_dir)
    runner = TensorRTRunner(bundle, ("fused", "ir_only"))
    sizes = []
    for graph in ("fused", "ir_only"):
        engine = trt.Runtime(tensorrt_logger()).deserialize_cuda_engine(  # TensorRT keeps one logger
            select_engine(bundle, graph, *tensorrt_runtime_info()[:3])[0].path.read_bytes())
        sizes.append(int(getattr(engine, "device_memory_size_v2", None) or engine.device_memory_size))
    assert runner.device_memory_bytes == max(sizes + [256])
    assert runner.info["device_memory_bytes"] == runner.device_memory_bytes
    (eo, ir), = random_frames(2, n=1)
    first = runner.run("fused", {"eo": eo[None], "ir": ir[None]})
    only_ir = runner.run("ir_only", {"ir": ir[None]})
    again = runner.run("fused", {"eo": eo[None], "ir": ir[None]})  # the IR-only run reused the same scratch
    assert all((a == b).all() for a, b in zip(first, again))
    assert only_ir[0].shape == (1, H, W)
    runner.close()


def _rewrite_engine(bundle_dir, graph, data=None, **fields):
    manifest_path = bundle_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for rec in manifest["engines"]:
        if rec["graph"] == graph:
            if data is not None:
                (bundle_dir / rec["file"]).write_bytes(data)
                rec["sha256"] = sha256_of(bundle_dir / rec["file"])
            rec.update(fields)
    manifest_path.write_text(json.dumps(manifest))


def test_corrupt_engine_is_a_bundle_error_and_auto_falls_back(bundle_dir):
    build(bundle_dir)
    _rewrite_engine(bundle_dir, "ir_only", data=b"\x00not an engine" * 64)  # hash updated: only TensorRT can tell
    with pytest.raises(BundleError, match="could not be deserialized"):
        load_bundle(bundle_dir, backend="tensorrt")
    seg = load_bundle(bundle_dir, backend="auto")
    assert seg.backend_name == "onnxruntime" and "could not be deserialized" in seg.fallback_reason


def test_stale_engine_refused_then_rebuilt(bundle_dir):
    build(bundle_dir)
    _rewrite_engine(bundle_dir, "fused", tensorrt_version="9.0.0")
    with pytest.raises(BundleError, match="TensorRT 9.0.0"):
        load_bundle(bundle_dir, backend="tensorrt")
    seg = load_bundle(bundle_dir, backend="auto")
    assert seg.backend_name == "onnxruntime" and "rebuild" in seg.fallback_reason
    seg = load_bundle(bundle_dir, backend="tensorrt", rebuild=True)
    assert seg.backend_name == "tensorrt" and seg.runner.info["rebuilt"] == ["fused"]
    (fresh,) = [e for e in load_manifest(bundle_dir).engines if e.graph == "fused"]  # the stale record was replaced
    assert fresh.tensorrt_version == trt.__version__ and fresh.precision == "fp32"
    seg.close()


def test_engine_with_wrong_io_is_refused(bundle_dir, tmp_path):
    """An engine built from another bundle size: names right, shapes wrong."""
    other = make_fake_bundle(tmp_path / "other", graphs=("ir_only",), h=32, w=40, make=float_graph)
    data = build_engine_bytes(other / "ir_only.onnx", "fp32", 256, log=None)
    assert inspect_engine_bytes(data)["ir"] == ("input", (1, 32, 40), "uint8")
    build(bundle_dir)
    _rewrite_engine(bundle_dir, "ir_only", data=data)
    with pytest.raises(BundleError, match="tensor 'ir' is input uint8 \\[1, 32, 40\\]"):
        load_bundle(bundle_dir, backend="tensorrt")


def test_int8_build_with_calibration_images_and_cache(bundle_dir, tmp_path):
    images = tmp_path / "calib"
    (images / "rgb").mkdir(parents=True)
    (images / "ir").mkdir()
    rng = np.random.default_rng(3)
    for i in range(8):
        cv2.imwrite(str(images / "rgb" / f"{i}.png"), rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
        cv2.imwrite(str(images / "ir" / f"{i}.png"), rng.integers(0, 256, (H, W), dtype=np.uint8))
    cache = tmp_path / "{graph}.calib"
    result = run_build("--bundle", bundle_dir, "--precision", "int8", "--calib-images", images,
                       "--calib-cache", cache, "--workspace-mb", "256")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "fused.calib").is_file() and (tmp_path / "ir_only.calib").is_file()
    result = run_build("--bundle", bundle_dir, "--precision", "int8", "--calib-cache", cache)  # cache only
    assert result.returncode == 0, result.stderr
    seg = load_bundle(bundle_dir, backend="tensorrt")
    ort_seg = load_bundle(bundle_dir, backend="onnxruntime")  # the fp32 graphs
    assert seg.info["precision"] == {"fused": "int8", "ir_only": "int8"}
    mask, conf = seg.ir_only(random_frames(4, n=1)[0][1])
    assert mask.shape == conf.shape == (H, W)
    # Calibrated scales, not garbage: the shape check above passed with the uint8-fed calibrator too.
    for eo, ir in random_frames(5, n=2):
        assert (seg.ir_only(ir)[0] == ort_seg.ir_only(ir)[0]).mean() >= 0.9
        assert (seg.fused(eo, ir)[0] == ort_seg.fused(eo, ir)[0]).mean() >= 0.9
    seg.close()


def test_int8_from_qdq_graphs_without_calibration(bundle_dir):
    """Explicit quantization: INT8 engines from the bundle's Q/DQ graphs, no images, no cache."""
    add_qdq_records(bundle_dir)
    result = run_build("--bundle", bundle_dir, "--precision", "int8", "--workspace-mb", "256")
    assert result.returncode == 0, result.stderr
    bundle = load_manifest(bundle_dir)
    assert {e.onnx_sha256 for e in bundle.engines} == {q.sha256 for q in bundle.quantized.values()}
    seg = load_bundle(bundle_dir, backend="tensorrt")
    ort_seg = load_bundle(bundle_dir, backend="onnxruntime")  # runs the fp32 graphs
    assert seg.info["precision"] == {"fused": "int8", "ir_only": "int8"}
    for eo, ir in random_frames(7, n=2):
        m1, _ = seg.ir_only(ir)
        m2, _ = ort_seg.ir_only(ir)
        assert m1.shape == (H, W) and (m1 == m2).mean() >= 0.9  # 2.0-wide int8 steps on a 1x1 conv: close
    seg.close()


def test_real_exported_bundle_builds_and_matches_onnxruntime(bundle_copy):
    """The exporter's CSK-Net graphs (conftest's tiny bundle) through TensorRT, fp32 and fp16."""
    bundle = load_manifest(bundle_copy)
    h, w = bundle.height, bundle.width
    ort_seg = load_bundle(bundle_copy, backend="onnxruntime")
    rng = np.random.default_rng(6)
    frames = [(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), rng.integers(0, 256, (h, w), dtype=np.uint8))
              for _ in range(3)]
    for precision, agreement in (("fp32", 0.995), ("fp16", 0.97)):
        result = run_build("--bundle", bundle_copy, "--precision", precision, "--workspace-mb", "512")
        assert result.returncode == 0, result.stderr
        seg = load_bundle(bundle_copy, backend="tensorrt")
        assert seg.info["precision"] == {"fused": precision, "ir_only": precision}
        for eo, ir in frames:
            pairs = ((seg.fused(eo, ir), ort_seg.fused(eo, ir)), (seg.ir_only(ir), ort_seg.ir_only(ir)))
            for (m1, c1), (m2, c2) in pairs:
                assert (m1 == m2).mean() >= agreement
                assert np.percentile(np.abs(c1.astype(int) - c2.astype(int)), 99) <= (1 if precision == "fp32" else 3)
        seg.close()
