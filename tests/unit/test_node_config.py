"""Node parameter validation and the per-frame image helpers (no ROS needed)."""

import numpy as np
import pytest
import yaml

from csk_ros.imaging.frames import InputPreparer, colorize, overlay, palette_lut, resize_nearest
from csk_ros.logic.config import PARAMS, SPECS, build_config
from tests.conftest import ROOT


def test_shipped_yaml_declares_exactly_the_node_parameters():
    doc = yaml.safe_load((ROOT / "config" / "segment.yaml").read_text())
    params = doc["/**"]["ros__parameters"]

    def flatten(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict):
                yield from flatten(v, f"{prefix}{k}.")
            else:
                yield f"{prefix}{k}", v

    flat = dict(flatten(params))
    assert set(flat) == set(SPECS)
    for name, value in flat.items():
        if name != "model_dir":
            assert value == SPECS[name].default, f"{name}: yaml {value!r} != code default {SPECS[name].default!r}"
    assert all(p.description for p in PARAMS)


def test_valid_config_and_overrides():
    cfg = build_config({"model_dir": "/b", "health.recover_frames": 3, "thermal.mode": "fixed",
                        "thermal.low": 1000.0, "thermal.high": 9000.0})
    assert cfg.health.recover_frames == 3 and cfg.homography is None
    rule = cfg.thermal_rule({"mode": "percentile"})
    assert rule.mode == "fixed" and rule.high == 9000.0
    assert build_config({"model_dir": "/b"}).thermal_rule({"mode": "fixed", "low": 0, "high": 255}).high == 255


@pytest.mark.parametrize("values, message", [
    ({}, "parameter 'model_dir' is required"),
    ({"model_dir": "/b", "qos": "fast"}, "parameter 'qos' must be one of"),
    ({"model_dir": "/b", "sync_slop_s": -0.1}, "parameter 'sync_slop_s' must be >= 0.0"),
    ({"model_dir": "/b", "health.frozen_frames": 1}, "frozen_frames must be 0 (disabled) or >= 2"),
    ({"model_dir": "/b", "eo_to_ir_homography": [0.0] * 9}, "invertible"),
    ({"model_dir": "/b", "thermal.mode": "fixed", "thermal.low": 5.0, "thermal.high": 1.0}, "needs high > low"),
    ({"model_dir": "/b", "rebuild_engines": "yes"}, "must be a bool"),
    ({"model_dir": "/b", "colour": 1}, "unknown parameter"),
    ({"model_dir": "/b", "sync_slop_s": 0.6}, "must be below 'health.ir_timeout_s'"),
])
def test_bad_values_name_the_parameter(values, message):
    with pytest.raises(ValueError) as err:
        build_config(values)
    assert message in str(err.value)


def test_preparer_resizes_and_rejects_unregistered_aspect_mismatch():
    prep = InputPreparer(48, 64)
    assert prep.ir(np.zeros((480, 640), np.uint8)).shape == (48, 64)
    assert prep.eo(np.zeros((480, 640, 3), np.uint8), (480, 640)).shape == (48, 64, 3)
    with pytest.raises(ValueError, match="differ in aspect ratio"):
        prep.eo(np.zeros((480, 480, 3), np.uint8), (480, 640))


def test_preparer_applies_the_homography_into_the_ir_frame():
    # EO is 2x the IR resolution and shifted by 10 EO pixels: H maps EO -> IR pixels.
    h = np.array([[0.5, 0, -5.0], [0, 0.5, 0], [0, 0, 1]])
    prep = InputPreparer(60, 80, h)
    eo = np.zeros((120, 160, 3), np.uint8)
    eo[:, 90:100] = 255  # a bright column at EO x=90..99 -> IR x=40..44.5
    out = prep.eo(eo, (60, 80))
    columns = np.where(out[30, :, 0] > 128)[0]
    assert 39 <= columns.min() and columns.max() <= 45


def test_nearest_resize_never_invents_class_ids():
    mask = np.tile(np.array([[0, 8], [3, 5]], np.uint8), (10, 10))
    big = resize_nearest(mask, (77, 93))
    assert set(np.unique(big)) <= {0, 3, 5, 8}


def test_colorize_and_overlay():
    lut = palette_lut([[255, 0, 0], [0, 255, 0]])
    colored = colorize(np.array([[0, 1]], np.uint8), lut)
    assert colored[0, 0].tolist() == [0, 0, 255] and colored[0, 1].tolist() == [0, 255, 0]  # BGR
    blended = overlay(np.full((1, 2), 100, np.uint8), colored, 0.5)
    assert blended.shape == (1, 2, 3) and blended[0, 0, 2] == 178


def test_colorize_is_the_palette_lookup_for_every_id_and_layout():
    rng = np.random.default_rng(0)
    lut = palette_lut(rng.integers(0, 256, (9, 3)))
    mask = rng.integers(0, 256, (48, 64), dtype=np.uint8)  # ids past the palette are black
    for m in (mask, mask[:, ::2], mask.T):  # strided views too
        colored = colorize(m, lut)
        assert colored.shape == m.shape + (3,) and np.array_equal(colored, lut[m])
    assert not colorize(np.full((2, 2), 200, np.uint8), lut).any()


def test_one_palette_lookup_for_ros_images_and_figures():
    """bgr8 for the node's images, RGB for training's figures (with 255 = ignore shown white): one table."""
    palette = [[10, 20, 30], [40, 50, 60]]
    mask = np.array([[0, 1, 255, 9]], np.uint8)
    assert colorize(mask, palette_lut(palette)).tolist() == [[[30, 20, 10], [60, 50, 40], [0, 0, 0], [0, 0, 0]]]
    figure = colorize(mask, palette_lut(palette, rgb=True, id_255=(255, 255, 255)))
    assert figure.tolist() == [[[10, 20, 30], [40, 50, 60], [255, 255, 255], [0, 0, 0]]]
