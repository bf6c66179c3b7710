"""The REAL onnxruntime quantiser's graphs against TensorRT's UINT8 rules (issue 26, defect 1).

quant_pre_process's ONNX Runtime optimisation folds the mask's ArgMax(int64) -> Cast(float) ->
Cast(uint8) into one Cast(int64 -> uint8), which TensorRT (10.3, 10.16) refuses. Hand-made Q/DQ
graphs never went through the quantiser, so only its real output on the committed fixture bundle
shows the defect. No TensorRT here: the rules are checked by the same function the build's
pre-flight runs (csk_ros.backends.engine_check.uint8_intermediate_problems).
"""

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from csk_ros.backends.engine_check import uint8_intermediate_problems
from csk_ros.bundle import load_manifest
from engines.quantize import QuantizeError, quantize_bundle
from tests.support.trt_fixtures import run_build

REPO = Path(__file__).resolve().parents[2]
FIXTURE_BUNDLE = REPO / "tests" / "fixtures" / "tiny_bundle"
FAKE_TRT = REPO / "tests" / "support" / "fake_tensorrt"
QUIET = dict(num_images=4, val_images=4, log=lambda *_: None)
NO_TRT = pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None,
                            reason="tensorrt is installed here: the build would go past its pre-flight")


@pytest.fixture
def fixture_copy(tmp_path) -> Path:
    """A writable copy of tests/fixtures/tiny_bundle (the committed files stay untouched)."""
    return Path(shutil.copytree(FIXTURE_BUNDLE, tmp_path / "bundle"))


def quantized_paths(bundle: Path) -> dict[str, Path]:
    return {g: rec.path for g, rec in load_manifest(bundle).quantized.items()}


def test_tensorrt_flavour_passes_tensorrt_uint8_rules(fixture_copy):
    """int8-symmetric graphs: UINT8 only as graph input/output, Cast to UINT8 only from FLOAT/FLOAT16."""
    quantize_bundle(fixture_copy, activations="int8-symmetric", **QUIET)
    paths = quantized_paths(fixture_copy)
    assert set(paths) == {"fused", "ir_only"}
    for graph, path in paths.items():
        assert uint8_intermediate_problems(path) == [], graph
        model = onnx.load(str(path))
        producer = {out: n for n in model.graph.node for out in n.output}
        mask_cast = producer["mask"]
        assert mask_cast.op_type == "Cast" and producer[mask_cast.input[0]].op_type == "Cast"  # via float


def test_onnxruntime_flavour_keeps_the_float_cast_and_the_build_refuses_it(fixture_copy):
    """uint8 activations are that flavour's design (it never goes to TensorRT), the mask's float ->
    uint8 ending is not; engines.build refuses it in one line that names the fix."""
    quantize_bundle(fixture_copy, activations="uint8", **QUIET)
    for path in quantized_paths(fixture_copy).values():
        assert uint8_intermediate_problems(path, casts_only=True) == []
        (summary,) = uint8_intermediate_problems(path)  # all its uint8 activations in one line
        assert "QuantizeLinear nodes produce uint8" in summary and "--activations int8-symmetric" in summary
    result = run_build("--bundle", fixture_copy, "--precision", "int8")
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and "--activations int8-symmetric" in line and "ONNX Runtime flavour" in line


@NO_TRT
def test_build_accepts_the_tensorrt_flavour(fixture_copy):
    """Without TensorRT the build stops after its pre-flight with the install message (exit 2), not
    with 'cannot be parsed by TensorRT' (exit 1); with the TensorRT double (which holds the UINT8 rules
    too) it builds and records both INT8 engines from the Q/DQ graphs."""
    quantize_bundle(fixture_copy, activations="int8-symmetric", **QUIET)
    result = run_build("--bundle", fixture_copy, "--precision", "int8")
    assert result.returncode == 2, result.stderr
    assert "cannot be parsed by TensorRT" not in result.stderr and "--onnx=" in result.stdout
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(FAKE_TRT), str(REPO)]))
    result = subprocess.run([sys.executable, "-m", "engines.build", "--bundle", str(fixture_copy), "--precision",
                             "int8"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    bundle = load_manifest(fixture_copy)
    assert sorted(e.graph for e in bundle.engines) == ["fused", "ir_only"]
    assert all(e.onnx_sha256 == bundle.quantized[e.graph].sha256 for e in bundle.engines)


def test_quantiser_refuses_a_graph_that_breaks_the_rules(fixture_copy, monkeypatch):
    """Should the cast chain ever be lost again, the quantiser refuses and writes nothing."""
    import engines.quantize as quantize

    before = sorted(p.name for p in fixture_copy.iterdir())
    monkeypatch.setattr(quantize, "restore_float_casts", lambda model: 0)
    with pytest.raises(QuantizeError, match=r"breaks TensorRT's UINT8 rules.*casts INT64 tensor .* to uint8"):
        quantize_bundle(fixture_copy, activations="int8-symmetric", **QUIET)
    assert sorted(p.name for p in fixture_copy.iterdir()) == before
