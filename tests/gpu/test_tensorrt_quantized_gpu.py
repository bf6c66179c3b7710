"""Real TensorRT on the REAL quantiser's output (issue 26): test_tensorrt_gpu.py's Q/DQ graphs are
hand-made and never went through onnxruntime's quantiser, whose graph optimisation once folded the
mask's float cast away. Here engines.quantize's TensorRT flavour of the committed fixture bundle is
built into INT8 engines and run next to ONNX Runtime running the same Q/DQ graphs. A separate file
because engines.quantize needs torch (its training config), which runtime-only GPU machines lack:
there this file is left out, and the rest of the GPU tests still run.

Unverified on a GPU until someone runs it on one (no machine this project is developed on has TensorRT).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

trt = pytest.importorskip("tensorrt", reason="TensorRT Python bindings are not installed (GPU machines only)")

from tests.support.trt_fixtures import cudart_with_a_gpu  # noqa: E402

cudart_with_a_gpu()  # or the whole module is skipped, saying why

from csk_ros.backends import load_bundle  # noqa: E402
from csk_ros.bundle import load_manifest  # noqa: E402
from engines.quantize import quantize_bundle  # noqa: E402
from tests.support.trt_fixtures import run_build  # noqa: E402

FIXTURE_BUNDLE = Path(__file__).resolve().parents[1] / "fixtures" / "tiny_bundle"


def test_int8_engines_from_the_quantisers_tensorrt_flavour(tmp_path):
    bundle_dir = Path(shutil.copytree(FIXTURE_BUNDLE, tmp_path / "bundle"))
    quantize_bundle(bundle_dir, activations="int8-symmetric", num_images=8, val_images=4, log=lambda *_: None)
    result = run_build("--bundle", bundle_dir, "--precision", "int8", "--workspace-mb", "512")
    assert result.returncode == 0, result.stderr
    bundle = load_manifest(bundle_dir)
    assert {e.onnx_sha256 for e in bundle.engines} == {q.sha256 for q in bundle.quantized.values()}
    trt_seg = load_bundle(bundle_dir, backend="tensorrt", precision="int8")
    ort_seg = load_bundle(bundle_dir, backend="onnxruntime", precision="int8")  # the same Q/DQ graphs
    rng = np.random.default_rng(26)
    for _ in range(3):
        eo = rng.integers(0, 256, (bundle.height, bundle.width, 3), dtype=np.uint8)
        ir = rng.integers(0, 256, (bundle.height, bundle.width), dtype=np.uint8)
        for (m1, _), (m2, _) in ((trt_seg.fused(eo, ir), ort_seg.fused(eo, ir)),
                                 (trt_seg.ir_only(ir), ort_seg.ir_only(ir))):
            assert m1.dtype == np.uint8 and (m1 == m2).mean() >= 0.9
    trt_seg.close()
