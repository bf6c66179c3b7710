"""The committed fixture bundle (tests/fixtures/tiny_bundle, what `tiny_bundle` is
where torch is not installed) against the current exporter: it must load, satisfy
the bundle contract and TensorRT's ONNX rules, and compute the same masks as a
fresh export of the same checkpoint. Failing here means the exporter changed what
a bundle holds: run `.venv/bin/python tests/fixtures/make_fixtures.py` and commit."""

from __future__ import annotations

import json

import numpy as np

from csk_ros.backends import load_bundle
from csk_ros.backends.engine_check import uint8_intermediate_problems
from csk_ros.bundle import GRAPH_INPUTS, GRAPH_OUTPUTS, load_manifest
from engines.verify import synthetic_frames
from tests.conftest import FIXTURE_BUNDLE, HAVE_TORCH

REGENERATE = "the exporter changed: run `.venv/bin/python tests/fixtures/make_fixtures.py` and commit the result"
CONTRACT_KEYS = ("format_version", "class_names", "palette", "input", "outputs", "normalization", "thermal_scaling")


def test_fixture_bundle_loads_and_keeps_the_contract():
    bundle = load_manifest(FIXTURE_BUNDLE)  # verifies every file's sha256
    assert set(bundle.graphs) == {"fused", "ir_only"} and not bundle.engines
    for name, record in bundle.graphs.items():
        assert record.inputs == GRAPH_INPUTS[name] and record.outputs == GRAPH_OUTPUTS
        assert uint8_intermediate_problems(record.path) == [], REGENERATE
    assert sorted(p.name for p in FIXTURE_BUNDLE.iterdir()) == sorted(
        ["manifest.json", *(r.path.name for r in [*bundle.graphs.values(), *bundle.quantized.values()])])


def test_fixture_bundle_matches_a_fresh_export(tiny_bundle):
    """With torch, `tiny_bundle` is a fresh export of the fixture's checkpoint."""
    fixture = json.loads((FIXTURE_BUNDLE / "manifest.json").read_text())
    fresh = json.loads((tiny_bundle / "manifest.json").read_text())
    assert set(fixture) == set(fresh), REGENERATE
    for key in CONTRACT_KEYS:
        assert fixture[key] == fresh[key], f"manifest '{key}' differs: {REGENERATE}"
    assert set(fixture.get("quantized") or {}) == set(fresh.get("quantized") or {}), REGENERATE
    assert fixture["checkpoint"] == fresh["checkpoint"]  # same weights (conftest.write_checkpoint, seed 0)
    ours, theirs = load_bundle(FIXTURE_BUNDLE, backend="onnxruntime"), load_bundle(tiny_bundle, backend="onnxruntime")
    bundle = load_manifest(FIXTURE_BUNDLE)
    for frame in synthetic_frames(bundle.height, bundle.width, 3, seed=11):
        for a, b in ((ours.fused(frame["eo"], frame["ir"]), theirs.fused(frame["eo"], frame["ir"])),
                     (ours.ir_only(frame["ir"]), theirs.ir_only(frame["ir"]))):
            assert (a[0] == b[0]).all() and np.abs(a[1].astype(int) - b[1].astype(int)).max() <= 1, REGENERATE
    ours.close()
    theirs.close()
    if not HAVE_TORCH:  # the comparison above was the fixture with itself
        assert tiny_bundle != FIXTURE_BUNDLE  # a copy: tests may not modify the committed files
