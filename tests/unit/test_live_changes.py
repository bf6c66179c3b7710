"""Live parameters and the model swap without ROS: which parameters may change on a running node, and that a
change or a swap reaches the next frame while the pipeline's state carries over."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from csk_ros.backends import load_bundle
from csk_ros.backends.replacement import check_outputs, describe_change, load_checked
from csk_ros.bundle import BundleError
from csk_ros.logic.config import LIVE_PARAMS, SPECS, build_config
from tests.unit.test_pipeline import PERIOD, run_frames, step


def test_the_issue_lists_split_into_live_and_read_only():
    for name in ("confidence_threshold", "low_confidence_policy", "sync_slop_s", "overlay_alpha",
                 "diagnostics_period_s", "health.eo_timeout_s", "health.stale_periods", "health.dark_luma_mean"):
        assert name in LIVE_PARAMS, name
    for name in ("backend", "precision", "qos", "qos_depth", "eo_transport", "ir_transport", "publish_points",
                 "rebuild_engines", "ort_threads", "output_size", "lifecycle"):
        assert name not in LIVE_PARAMS, name
    assert set(LIVE_PARAMS) <= set(SPECS)


def test_a_live_confidence_policy_applies_from_the_next_frame_and_keeps_the_health_state(core, tiny_bundle):
    t, result = run_frames(core, 15)
    assert result.mode == "fused" and (result.mask != 255).all()
    counts_before = dict(core.counts)
    core.apply_config(build_config({"model_dir": str(tiny_bundle), "confidence_threshold": 1.0,
                                    "low_confidence_policy": "unlabeled"}))
    result, announced = step(core, t + PERIOD)
    assert result.mode == "fused" and not announced, "a live change must not restart the mode timeline"
    low = result.confidence < 255
    assert low.any() and (result.mask[low] == 255).all()
    assert core.counts["masks_fused"] == counts_before["masks_fused"] + 1


def test_live_health_limits_change_the_stale_limit(core, tiny_bundle):
    before = core.health.stale_limit("eo")
    core.apply_config(build_config({"model_dir": str(tiny_bundle), "health.eo_timeout_s": 5.0}))
    assert core.health.stale_limit("eo") >= 5.0 > before
    assert core.eo_loss.max_gap_s == 5.0


def test_a_live_homography_registers_the_next_eo_frame(core, tiny_bundle):
    shift = [1.0, 0.0, 8.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    core.apply_config(build_config({"model_dir": str(tiny_bundle), "eo_to_ir_homography": shift}))
    eo = np.full((60, 80, 3), 200, np.uint8)
    warped = core.preparer.eo(eo, (60, 80))
    assert warped[:, :4].max() == 0 and warped[:, 10:].min() == 200  # shifted right by 8 IR px (~6 model px)


def test_a_swap_serves_the_new_model_from_the_next_frame_and_keeps_the_counters(core, tiny_bundle, tmp_path):
    t, _ = run_frames(core, 12)
    other_dir = shutil.copytree(tiny_bundle, tmp_path / "other")
    new = load_bundle(other_dir, backend="onnxruntime")
    masks_before = core.counts["masks_fused"]
    old = core.swap_segmenter(new)
    result, announced = step(core, t + PERIOD)
    assert core.segmenter is new and old is not new
    assert result.mode == "fused" and not announced
    assert core.counts["masks_fused"] == masks_before + 1 and core.counts["model_swaps"] == 1
    old.close()


def renamed_bundle(tiny_bundle, dst, names):
    root = shutil.copytree(tiny_bundle, dst)
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["class_names"] = names
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def test_describe_change_sees_new_class_names(tiny_bundle, tmp_path):
    names = json.loads((tiny_bundle / "manifest.json").read_text())["class_names"]
    a = load_bundle(tiny_bundle, backend="onnxruntime", warm_up=False)
    b = load_bundle(renamed_bundle(tiny_bundle, tmp_path / "b", [n.upper() for n in names]), backend="onnxruntime",
                    warm_up=False)
    c = load_bundle(shutil.copytree(tiny_bundle, tmp_path / "c"), backend="onnxruntime", warm_up=False)
    assert describe_change(a, b).classes_changed and not describe_change(a, c).classes_changed
    assert not describe_change(a, b).size_changed
    for s in (a, b, c):
        s.close()


def test_load_checked_refuses_a_bundle_whose_graph_file_is_corrupt(tiny_bundle, tmp_path):
    root = shutil.copytree(tiny_bundle, tmp_path / "bad")
    graph = sorted(root.glob("*.onnx"))[0]
    graph.write_bytes(b"not an onnx graph")
    with pytest.raises(BundleError):
        load_checked(build_config({"model_dir": str(root), "backend": "onnxruntime"}))


def test_check_outputs_refuses_class_ids_the_bundle_does_not_name(tiny_bundle):
    segmenter = load_bundle(tiny_bundle, backend="onnxruntime", warm_up=False)
    real = segmenter.ir_only
    n = len(segmenter.bundle.class_names)
    segmenter.ir_only = lambda ir: (np.full_like(real(ir)[0], n), real(ir)[1])
    with pytest.raises(BundleError, match=f"class id {n}"):
        check_outputs(segmenter)
    segmenter.ir_only = lambda ir: (real(ir)[0][:-1], real(ir)[1])
    with pytest.raises(BundleError, match="expected uint8"):
        check_outputs(segmenter)
    segmenter.close()
