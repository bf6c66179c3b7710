"""csk_ros.logic.health: EO modality health with synthetic timestamps and images (no ROS)."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest

from csk_ros.logic.health import EoHealthMonitor, HealthParams, luma_histogram_stats, luma_sample

DT = 1 / 30
SHAPE = (480, 640, 3)


@functools.lru_cache(maxsize=8)
def _base(mean: float) -> np.ndarray:
    yy, xx = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]]
    base = mean + 60 * np.sin(xx / 37.0) * np.cos(yy / 23.0)
    return (base[:, :, None] + np.array([10.0, 0.0, -10.0])).astype(np.int16)


def scene(seed: int = 0, noise: int = 3, mean: float = 110.0) -> np.ndarray:
    """A textured day-like frame with sensor noise (uniform +-noise levels); a new draw per seed."""
    img = _base(mean)
    if noise:
        img = img + np.random.default_rng(seed).integers(-noise, noise + 1, SHAPE, dtype=np.int16)
    return np.clip(img, 0, 255).astype(np.uint8)


class Feed:
    """Drives a monitor the way the node does: EO and IR at 30 Hz, decide per IR frame."""

    def __init__(self, params: HealthParams | None = None, t0: float = 100.0):
        self.mon = EoHealthMonitor(params or HealthParams())
        self.t = t0
        self.seed = 0

    def step(self, eo=None, ir: bool = True, invalid: str | None = None):
        self.t += DT
        verdict = None
        if invalid is not None:
            verdict = self.mon.observe_eo_invalid(self.t, invalid)
        elif eo is not None:
            if isinstance(eo, str) and eo == "fresh":
                self.seed += 1
                eo = scene(self.seed)
            verdict = self.mon.observe_eo(self.t, eo)
        if ir:
            self.mon.observe_ir(self.t)
        return verdict, self.mon.decide(self.t)

    def healthy_until_fused(self, limit: int = 50) -> int:
        for i in range(1, limit + 1):
            _, d = self.step("fresh")
            if d.mode == "fused":
                return i
        raise AssertionError("never reached fused")


# ------------------------------------------------------------------ params


def test_params_defaults_validate():
    p = HealthParams()
    assert p.validate() is p
    assert (p.eo_timeout_s, p.ir_timeout_s, p.dark_frames, p.recover_frames, p.frozen_frames) == (0.5, 0.5, 3, 10, 5)


@pytest.mark.parametrize(
    "field,value",
    [
        ("eo_timeout_s", 0),
        ("eo_timeout_s", -1.0),
        ("ir_timeout_s", math.nan),
        ("dark_luma_mean", 300),
        ("dark_bright_fraction", 1.5),
        ("saturated_fraction", -0.1),
        ("dark_frames", 0),
        ("dark_frames", 2.5),
        ("recover_frames", 0),
        ("frozen_frames", 1),
        ("stride", 0),
        ("dark_bright_level", 64.5),
    ],
)
def test_params_invalid(field, value):
    p = HealthParams(**{field: value})
    with pytest.raises(ValueError, match=field):
        p.validate()
    with pytest.raises(ValueError, match=field):
        EoHealthMonitor(p)


def test_params_from_dict():
    assert HealthParams.from_dict({"recover_frames": 4}).recover_frames == 4
    with pytest.raises(ValueError, match="recover_frame"):
        HealthParams.from_dict({"recover_frame": 4})  # typo -> error, not ignored
    assert HealthParams.from_dict(HealthParams().to_dict()) == HealthParams()


def test_luma_stats_match_a_direct_computation():
    img = scene(3)
    s = luma_sample(img, 4)
    assert s.shape == (120, 160)
    import cv2

    ref = cv2.cvtColor(np.ascontiguousarray(img[::4, ::4]), cv2.COLOR_RGB2GRAY)
    assert np.abs(s.astype(int) - ref).max() <= 1
    mean, p99, bright, sat = luma_histogram_stats(s, 64, 250)
    assert mean == pytest.approx(s.mean())
    assert p99 == pytest.approx(np.percentile(s, 99), abs=1)
    assert bright == pytest.approx((s >= 64).mean())
    assert sat == pytest.approx((s >= 250).mean())


# ----------------------------------------------------------------- startup


def test_startup_before_anything():
    mon = EoHealthMonitor()
    d = mon.decide(10.0)
    assert (d.mode, d.reason, d.changed, d.since_s) == ("no_input", "startup", True, 10.0)
    d = mon.decide(10.1)
    assert (d.mode, d.changed, d.since_s) == ("no_input", False, 10.0)
    assert mon.decide(10.6).reason == "ir_stale"  # nothing for ir_timeout_s: no longer "startup"


def test_startup_needs_recover_frames_before_fused():
    f = Feed()
    v, d = f.step("fresh")
    assert (d.mode, d.reason) == ("ir_only", "eo_recovering")
    assert v.clean and not v.healthy and v.reason == "eo_recovering"
    assert f.healthy_until_fused() == HealthParams().recover_frames - 1
    _, d = f.step("fresh")
    assert (d.mode, d.reason, d.changed) == ("fused", "eo_healthy", False)


def test_ir_only_until_eo_arrives():
    mon = EoHealthMonitor()
    mon.observe_ir(0.0)
    assert (mon.decide(0.1).mode, mon.decide(0.1).reason) == ("ir_only", "startup")
    mon.observe_ir(0.6)
    assert (mon.decide(0.6).mode, mon.decide(0.6).reason) == ("ir_only", "eo_stale")


# ------------------------------------------------------------------- stale


def _fused_monitor(params: HealthParams | None = None) -> Feed:
    f = Feed(params)
    f.healthy_until_fused()
    return f


@pytest.mark.parametrize("t0", [100.0, 1.7e9])  # epoch-scale float seconds too
def test_eo_stale_exactly_at_timeout(t0):
    f = Feed(t0=t0)
    f.healthy_until_fused()
    last_eo = f.t
    mon = f.mon
    mon.observe_ir(last_eo + 0.4)
    # 0.499 s after the last EO: still fused; at exactly 0.5 s: IR only
    d = mon.decide(last_eo + 0.499)
    assert d.mode == "fused"
    mon.observe_ir(last_eo + 0.5)
    d = mon.decide(last_eo + 0.5)
    assert (d.mode, d.reason, d.changed, d.since_s) == ("ir_only", "eo_stale", True, last_eo + 0.5)


def test_stale_gap_needs_recovery_even_without_decide():
    f = _fused_monitor()
    # EO stops for 0.6 s but nobody calls decide in between; then EO comes back
    f.t += 0.6
    v = f.mon.observe_eo(f.t, scene(999))
    assert not v.healthy and v.reason == "eo_recovering"
    f.mon.observe_ir(f.t)
    assert f.mon.decide(f.t).mode == "ir_only"
    assert f.healthy_until_fused() == HealthParams().recover_frames - 1


# -------------------------------------------------------------------- dark


def test_dark_trips_after_dark_frames_not_before():
    f = _fused_monitor()
    black = np.full(SHAPE, 3, np.uint8)
    for i in range(1, 3):
        v, d = f.step(black)
        assert d.mode == "fused", i  # 1 and 2 dark frames: not yet
        assert v.stats.dark and not v.clean
    v, d = f.step(black)
    assert (d.mode, d.reason, d.changed) == ("ir_only", "eo_dark", True)
    assert v.reason == "eo_dark"


def test_dark_run_is_consecutive():
    f = _fused_monitor()
    black = np.zeros(SHAPE, np.uint8)
    for _ in range(10):  # dark, dark, fresh, dark, dark, fresh ...: never 3 in a row
        f.step(black)
        f.step(black + 1)
        _, d = f.step("fresh")
        assert d.mode == "fused"


def test_dim_night_frame_with_bright_spots_stays_fused():
    rng = np.random.default_rng(5)
    night = np.clip(rng.normal(6, 2, SHAPE), 0, 255).astype(np.uint8)  # mean ~6: darker than the threshold
    for y, x in [(60, 100), (80, 400), (200, 600), (300, 250)]:  # street lights / lit windows
        night[y : y + 30, x : x + 30] = 230
    f = _fused_monitor()
    for i in range(20):
        frame = night.copy()
        frame += rng.integers(0, 3, SHAPE, dtype=np.uint8)  # live sensor noise
        v, d = f.step(frame)
        assert d.mode == "fused", (i, v)
        assert not v.stats.dark
        assert v.stats.mean_luma < HealthParams().dark_luma_mean  # dark by the mean alone
    # the same frame without the lights IS dark
    lights_off = np.clip(rng.normal(6, 2, SHAPE), 0, 255).astype(np.uint8)
    for _ in range(3):
        v, d = f.step(lights_off)
    assert d.reason == "eo_dark"


# -------------------------------------------------------------- saturation


def test_saturated():
    f = _fused_monitor()
    white = np.full(SHAPE, 255, np.uint8)
    white[:20] = 100  # 4 % not saturated: still > 90 % saturated
    f.step(white)
    _, d = f.step(white + 0)  # equal frames, but only 2: not frozen
    assert d.mode == "fused"
    v, d = f.step(white)
    assert (d.mode, d.reason) == ("ir_only", "eo_saturated")


def test_bright_day_frame_not_saturated():
    f = _fused_monitor()
    img = scene(1, mean=190)  # bright, partly clipped, but far from 90 % >= 250
    for _ in range(5):
        v, d = f.step(
            np.clip(img.astype(int) + np.random.default_rng(f.seed).integers(0, 3, SHAPE), 0, 255).astype(np.uint8)
        )
        f.seed += 1
    assert d.mode == "fused"
    assert 0.0 < v.stats.saturated_fraction < 0.9


# ------------------------------------------------------------------ frozen


def test_frozen_identical_frames():
    f = _fused_monitor()
    frozen = scene(12345)
    for n in range(1, 5):  # the same picture 1..4 times: not frozen yet
        v, d = f.step(frozen)
        assert d.mode == "fused", n
    v, d = f.step(frozen.copy())  # 5th time
    assert (d.mode, d.reason) == ("ir_only", "eo_frozen")
    assert v.stats.mean_abs_diff == 0.0


def test_noisy_static_scene_is_not_frozen():
    f = _fused_monitor()
    rng = np.random.default_rng(7)
    static = scene(0, noise=0).astype(np.int16)
    for _ in range(30):
        noisy = np.clip(static + rng.integers(-1, 2, SHAPE, dtype=np.int16), 0, 255).astype(np.uint8)  # +-1 level
        v, d = f.step(noisy)
        assert d.mode == "fused"
        assert not v.stats.repeated and v.stats.mean_abs_diff > HealthParams().frozen_max_mean_abs_diff


def test_frozen_check_can_be_disabled():
    f = _fused_monitor(HealthParams(frozen_frames=0))
    frozen = scene(4)
    for _ in range(30):
        _, d = f.step(frozen)
    assert d.mode == "fused"


def test_frozen_then_camera_resumes():
    f = _fused_monitor()
    frozen = scene(777)
    for _ in range(5):
        f.step(frozen)
    assert f.mon.decide(f.t).reason == "eo_frozen"
    assert f.healthy_until_fused() == HealthParams().recover_frames


# ----------------------------------------------------------------- invalid


def test_invalid_switches_immediately():
    f = _fused_monitor()
    v, d = f.step(invalid="truncated")
    assert (d.mode, d.reason, d.changed) == ("ir_only", "eo_invalid", True)
    assert not v.healthy and v.stats is None
    assert f.mon.snapshot()["last_invalid_reason"] == "truncated"
    assert f.mon.snapshot()["fault_counts"]["eo_invalid"] == 1


# ---------------------------------------------------------------- recovery


def test_recovery_needs_recover_frames_and_bad_frame_restarts_count():
    p = HealthParams()
    f = _fused_monitor()
    for _ in range(3):
        f.step(np.zeros(SHAPE, np.uint8))
    assert f.mon.decide(f.t).reason == "eo_dark"
    for i in range(p.recover_frames - 1):  # 9 healthy frames: still IR only, recovering
        v, d = f.step("fresh")
        assert (d.mode, d.reason) == ("ir_only", "eo_recovering"), i
    # one dark frame (not enough to trip dark again) restarts the count
    v, d = f.step(np.zeros(SHAPE, np.uint8))
    assert d.mode == "ir_only" and v.reason == "eo_dark"
    for i in range(p.recover_frames - 1):
        _, d = f.step("fresh")
        assert d.mode == "ir_only", i
    _, d = f.step("fresh")
    assert (d.mode, d.reason, d.changed) == ("fused", "eo_healthy", True)


def test_invalid_frame_restarts_recovery():
    p = HealthParams(recover_frames=4)
    f = _fused_monitor(p)
    f.step(invalid="bad_step")
    for _ in range(3):
        _, d = f.step("fresh")
    f.step(invalid="bad_step")
    for _ in range(3):
        _, d = f.step("fresh")
        assert d.mode == "ir_only"
    _, d = f.step("fresh")
    assert d.mode == "fused"


def test_since_s_tracks_mode_changes():
    f = _fused_monitor()
    t_fault = f.t + DT
    f.step(invalid="zero_size")
    for _ in range(3):
        _, d = f.step("fresh")
        assert d.since_s == pytest.approx(t_fault) and not d.changed


# ------------------------------------------------------------------ IR stale


def test_ir_stale_no_input_then_back():
    f = _fused_monitor()
    last_ir = f.t
    for _ in range(14):  # 0.467 s of EO only
        _, d = f.step("fresh", ir=False)
    assert d.mode == "fused"
    f.t = last_ir + 0.5 - DT
    _, d = f.step("fresh", ir=False)  # exactly 0.5 s without IR
    assert (d.mode, d.reason, d.changed) == ("no_input", "ir_stale", True)
    _, d = f.step("fresh", ir=True)  # IR back, EO healthy throughout: fused again at once
    assert (d.mode, d.changed) == ("fused", True)


# -------------------------------------------------------------- clock jump


def test_clock_jump_back_resets_no_wedging():
    f = _fused_monitor()
    mon = f.mon
    assert not mon.clock_jumped_back(f.t - 0.5)  # small reordering is not a jump
    assert mon.clock_jumped_back(f.t - 5.0)
    mon.reset()
    assert mon.decide(3.0).reason == "startup"
    # explicit reset keeps working from the new, earlier time base
    f.t = 3.0
    assert f.healthy_until_fused() == HealthParams().recover_frames


def test_clock_jump_back_is_handled_inside():
    f = _fused_monitor()
    before = f.mon.clock_resets
    f.t = 1.0  # bag loop: every time series jumps back 100 s
    _, d = f.step("fresh")
    assert f.mon.clock_resets >= before + 1
    assert d.mode == "ir_only"  # startup again, not wedged on stale "last seen" times
    assert f.healthy_until_fused() == HealthParams().recover_frames - 1
    # without the reset, the old stamps (~101 s) would make everything look fresh or stale forever


def test_decision_clock_jump_alone_resets():
    f = _fused_monitor()
    d = f.mon.decide(f.t - 10.0)  # e.g. /clock restarted; frames not yet seen on the new time base
    assert f.mon.clock_resets == 1
    assert (d.mode, d.reason, d.changed) == ("no_input", "startup", True)


def test_constant_clock_offset_does_not_reset():
    """Frame times from one clock, decisions from another 5 s behind: each series is monotonic."""
    mon = EoHealthMonitor()
    t = 50.0
    for i in range(40):
        t += DT
        mon.observe_eo(t, scene(i))
        mon.observe_ir(t)
        mon.decide(t - 0.2)
    assert mon.clock_resets == 0
    assert mon.decide(t).mode == "fused"


def test_non_finite_time_rejected():
    mon = EoHealthMonitor()
    with pytest.raises(ValueError):
        mon.observe_ir(math.nan)
    with pytest.raises(ValueError):
        mon.decide(math.inf)


def test_grey_eo_frames_accepted():
    mon = EoHealthMonitor()
    v = mon.observe_eo(0.0, np.zeros((480, 640), np.uint8))
    assert v.stats.dark
    with pytest.raises(ValueError):
        mon.observe_eo(0.1, np.zeros((480, 640, 2), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        mon.observe_eo(0.2, np.zeros((480, 640, 3), np.uint16))


def test_one_table_of_bounds_for_the_monitor_and_the_node():
    from dataclasses import fields

    from csk_ros.logic.config import SPECS
    from csk_ros.logic.health import HEALTH_LIMITS

    assert set(HEALTH_LIMITS) == {f.name for f in fields(HealthParams)}
    for name, (lo, hi) in HEALTH_LIMITS.items():
        spec = SPECS.get(f"health.{name}")
        if spec is not None:  # stride and clock_jump_tolerance_s are not node parameters
            assert (spec.min_value, spec.max_value) == (lo, hi)
        with pytest.raises(ValueError, match=name):
            HealthParams(**{name: hi + (1 if isinstance(hi, int) else 1.0)}).validate()
