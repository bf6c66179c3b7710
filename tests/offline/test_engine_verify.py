"""engines.verify: the deploy script's last gate (engine masks vs ONNX Runtime CPU),
checked here with ONNX Runtime on both sides and with deliberately wrong candidates."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from csk_ros.backends import load_bundle
from csk_ros.bundle import load_manifest
from engines import verify
from tests.support.trt_fixtures import add_qdq_records, float_graph, make_fake_bundle, write_image


class Perturbed:
    """A Segmenter stand-in whose masks differ from the real one's on `fraction` of the pixels."""

    def __init__(self, inner, fraction):
        self.inner, self.fraction = inner, fraction
        self.info, self.backend_name = {"precision": {}}, "perturbed"

    def _spoil(self, result):
        mask, conf = result
        mask = mask.copy()
        flat = mask.reshape(-1)
        n = int(round(flat.size * self.fraction))
        flat[:n] = (flat[:n] + 1) % 4
        return mask, conf

    def fused(self, eo, ir):
        return self._spoil(self.inner.fused(eo, ir))

    def ir_only(self, ir):
        return self._spoil(self.inner.ir_only(ir))

    def close(self):
        self.inner.close()


@pytest.fixture
def float_bundle(tmp_path):
    return make_fake_bundle(tmp_path / "b", h=24, w=32, make=float_graph)


def test_onnxruntime_against_itself_agrees_completely(tiny_bundle, capsys, tmp_path):
    out = tmp_path / "verify.json"
    assert verify.main(["--bundle", str(tiny_bundle), "--backend", "onnxruntime", "--json", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all("mask agreement min 100.00% over 2 frame(s)" in line for line in lines)
    assert lines[0].startswith("fused [onnxruntime fp32] vs ONNX Runtime CPU (fused.onnx)")
    results = json.loads(out.read_text())
    assert [r["graph"] for r in results] == ["fused", "ir_only"] and all(r["passed"] for r in results)


def test_synthetic_frames_have_structure_and_are_seeded():
    a, b = verify.synthetic_frames(24, 32, 2, seed=3), verify.synthetic_frames(24, 32, 2, seed=3)
    assert all((x[k] == y[k]).all() for x, y in zip(a, b) for k in ("eo", "ir"))
    assert a[0]["eo"].shape == (24, 32, 3) and a[0]["ir"].shape == (24, 32) and a[0]["eo"].dtype == np.uint8
    assert a[0]["ir"].std() > 20 and not (a[0]["ir"] == a[1]["ir"]).all()


@pytest.mark.parametrize("fraction, passes", [(0.005, True), (0.02, False)])
def test_a_candidate_below_the_threshold_fails(float_bundle, fraction, passes):
    bundle = load_manifest(float_bundle)
    candidate = Perturbed(load_bundle(float_bundle, backend="onnxruntime"), fraction)
    frames = verify.synthetic_frames(bundle.height, bundle.width, 2)
    results = verify.compare(candidate, bundle, frames, min_agreement=0.99)
    assert all(r.passed is passes for r in results)
    assert all(abs(min(r.agreement) - (1 - fraction)) < 0.01 for r in results)
    candidate.close()


def test_cli_stops_on_disagreement(float_bundle, monkeypatch, capsys):
    import csk_ros.backends

    real = csk_ros.backends.load_bundle
    monkeypatch.setattr(csk_ros.backends, "load_bundle", lambda *a, **k: Perturbed(real(*a, **k), 0.1))
    assert verify.main(["--bundle", str(float_bundle), "--backend", "onnxruntime"]) == 1
    captured = capsys.readouterr()
    assert "FAILED (needs >= 99.0%)" in captured.out and "do not deploy these engines" in captured.err


def test_an_int8_engine_is_compared_with_its_qdq_source(float_bundle):
    add_qdq_records(float_bundle, ("ir_only",))
    bundle = load_manifest(float_bundle)
    candidate = load_bundle(float_bundle, backend="onnxruntime")
    results = verify.compare(candidate, bundle, verify.synthetic_frames(bundle.height, bundle.width, 1),
                             precisions={"fused": "fp16", "ir_only": "int8"})
    by_graph = {r.graph: r for r in results}
    assert by_graph["ir_only"].source == "ir_only.int8.onnx" and by_graph["fused"].source == "fused.onnx"
    candidate.close()


def test_real_images_and_unavailable_backends(float_bundle, tmp_path, capsys):
    images = tmp_path / "imgs"
    for i in range(3):
        write_image(images / f"{i}.png", np.full((20, 30, 4), 40 * i, np.uint8))
    assert verify.main(["--bundle", str(float_bundle), "--backend", "onnxruntime", "--images", str(images),
                        "--frames", "3"]) == 0
    assert "over 3 frame(s)" in capsys.readouterr().out
    assert verify.main(["--bundle", str(float_bundle), "--images", str(tmp_path / "none")]) == 1
    if importlib.util.find_spec("tensorrt") is None:  # no TensorRT here: exit 2, no fallback to ONNX Runtime
        assert verify.main(["--bundle", str(float_bundle), "--backend", "tensorrt"]) == 2
        assert "cannot run this bundle here" in capsys.readouterr().err
