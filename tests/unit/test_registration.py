"""The live registration check (csk_ros.imaging.registration) on synthetic EO/IR scenes whose true
EO->IR homography is known: it must prefer the true registration over shifted and rotated ones, measure
an applied shift, and refuse to judge frames without edges."""

from __future__ import annotations

import math

import numpy as np
import pytest

from csk_ros.imaging import registration
from csk_ros.imaging.registration import RegistrationCheck, check_registration
from tests.support.rig_scenes import IR_SIZE, ir_view, scene

H_TRUE = np.array([[0.95, 0.02, 20.0], [-0.015, 0.97, 30.0], [1e-5, -2e-5, 1.0]])


def shifted(homography: np.ndarray, dx: float, dy: float) -> np.ndarray:
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]]) @ homography


def rotated(homography: np.ndarray, degrees: float, centre=(IR_SIZE[0] / 2, IR_SIZE[1] / 2)) -> np.ndarray:
    """The homography followed by a rotation about the IR image centre."""
    a = math.radians(degrees)
    c, s = math.cos(a), math.sin(a)
    cx, cy = centre
    return np.array([[c, -s, cx - c * cx + s * cy], [s, c, cy - s * cx - c * cy], [0.0, 0.0, 1.0]]) @ homography


@pytest.fixture(scope="module", params=[0, 1, 2])
def pair(request):
    eo, radiance = scene(request.param)
    return eo, ir_view(radiance, H_TRUE, request.param)


def test_the_true_homography_outscores_shifted_and_rotated_ones(pair):
    eo, ir = pair
    true = check_registration(eo, ir, H_TRUE)
    assert true.valid, true.note
    for d in (4, 8, 16):
        for dx, dy in ((d, 0), (0, d), (-d, d)):
            wrong = check_registration(eo, ir, shifted(H_TRUE, dx, dy))
            assert true.score > wrong.score, (dx, dy, true.score, wrong.score)
    for degrees in (2.0, -2.0):
        assert true.score > check_registration(eo, ir, rotated(H_TRUE, degrees)).score
    assert true.offset_px < 1.0 and true.best_score == pytest.approx(true.score, abs=0.02)


@pytest.mark.parametrize("error", [(-8.0, -12.0), (12.0, -8.0), (5.5, 3.0)])
def test_an_applied_shift_is_measured_within_2_px(pair, error):
    """A homography off by `error` after H needs the opposite translation to align."""
    eo, ir = pair
    result = check_registration(eo, ir, shifted(H_TRUE, *error))
    assert result.valid, result.note
    assert result.shift_px == pytest.approx((-error[0], -error[1]), abs=2.0)
    assert result.offset_px == pytest.approx(math.hypot(*error), abs=2.0)
    assert result.best_score > result.score


def test_co_aligned_cameras_need_no_homography():
    """None: EO only resized to the IR size (same aspect, here half the resolution)."""
    eo, radiance = scene(3, (1280, 960))
    half = np.array([[0.5, 0.0, -0.25], [0.0, 0.5, -0.25], [0.0, 0.0, 1.0]])  # pixel centres, as cv2.resize
    ir = ir_view(radiance, half, 3, (640, 480))
    result = check_registration(eo, ir, None)
    assert result.valid and result.offset_px < 1.0, result


def test_16_bit_thermal_is_judged_like_8_bit(pair):
    eo, ir = pair
    raw = ir.astype(np.uint16) * 40 + 7000
    raw[5, 5] = 65535  # a hot outlier pixel must not flatten the scaling
    a, b = check_registration(eo, ir, shifted(H_TRUE, 6, 0)), check_registration(eo, raw, shifted(H_TRUE, 6, 0))
    assert b.valid and b.shift_px == pytest.approx(a.shift_px, abs=0.5)


def test_partial_coverage_is_masked():
    """EO seeing a rotated part of the IR frame: only the covered pixels count."""
    h = rotated(np.array([[0.75, 0.0, 80.0], [0.0, 0.75, 70.0], [0.0, 0.0, 1.0]]), 10.0)
    eo, radiance = scene(4)
    ir = ir_view(radiance, h, 4)
    assert check_registration(eo, ir, h).offset_px < 1.0
    assert check_registration(eo, ir, shifted(h, 7, -5)).shift_px == pytest.approx((-7, 5), abs=2.0)


def test_a_shift_beyond_the_search_says_so(pair):
    eo, ir = pair
    result = check_registration(eo, ir, shifted(H_TRUE, 30, 0), search_px=16)
    assert "search limit" in result.note and result.offset_px >= 15.0 and result.at_limit
    assert not check_registration(eo, ir, H_TRUE, search_px=16).at_limit


def test_a_dark_eo_frame_needs_a_stronger_match(pair, monkeypatch):
    """The dark-EO quality floor: the same pair judged when bright, and when dark only if its match clears
    DARK_MIN_MATCH_NCC (raised here above any match so the floor's effect is visible)."""
    eo, ir = pair
    bright_check = check_registration(eo, ir, H_TRUE)
    dark = (eo.astype(np.float32) * (30.0 / bright_check.eo_luma)).astype(np.uint8)  # mean grey ~30: night
    dark_check = check_registration(dark, ir, H_TRUE)
    assert bright_check.eo_luma >= registration.DARK_EO_LUMA > dark_check.eo_luma
    assert bright_check.valid and dark_check.valid  # a clear match counts by night too
    monkeypatch.setattr(registration, "DARK_MIN_MATCH_NCC", 0.999)
    assert check_registration(eo, ir, H_TRUE).valid
    refused = check_registration(dark, ir, H_TRUE)
    assert not refused.valid and "for dark EO" in refused.note, refused


def test_frames_without_edges_are_not_judged(pair):
    eo, ir = pair
    rng = np.random.default_rng(5)
    flat_ir = np.full(ir.shape, 90, np.uint8)
    noise_ir = rng.normal(30000, 20, ir.shape).astype(np.uint16)  # uniform temperature: noise stretched to 8 bits
    dark_eo = np.clip(rng.normal(3, 1, eo.shape), 0, 255).astype(np.uint8)  # night, no lights
    for eo_frame, ir_frame, culprit in ((eo, flat_ir, "IR"), (eo, noise_ir, "IR"), (dark_eo, ir, "EO"),
                                        (np.zeros_like(eo), ir, "EO")):
        result = check_registration(eo_frame, ir_frame, H_TRUE)
        assert isinstance(result, RegistrationCheck)
        assert not result.valid and culprit in result.note, result
        assert math.isnan(result.offset_px)


def test_unrelated_scenes_are_not_judged():
    eo, _ = scene(6)
    _, other = scene(7)
    result = check_registration(eo, ir_view(other, H_TRUE, 7), H_TRUE)
    assert not result.valid and "no edge match" in result.note, result
