"""Transport loss from stamp gaps (csk_ros/logic/stream_loss.py) on synthetic stamp sequences."""

import numpy as np
import pytest

from csk_ros.logic.stream_loss import StreamLossEstimator

T0, PERIOD = 1_700_000_000.0, 1 / 30


def feed(keep, jitter=0.0, seed=0, max_gap_s=0.5):
    rng = np.random.default_rng(seed)
    est = StreamLossEstimator(max_gap_s=max_gap_s)
    stamps = T0 + np.arange(len(keep)) * PERIOD + rng.normal(0, jitter, len(keep))
    for s in stamps[np.asarray(keep, bool)]:
        est.observe(s)
    return est


def test_no_loss_gives_the_period_and_zero_loss():
    est = feed(np.ones(300), jitter=0.002)
    r = est.report()
    assert r.period_s == pytest.approx(PERIOD, rel=0.03)
    assert r.lost == 0 and r.loss_fraction == 0.0


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5, 0.7])
def test_random_loss_is_counted(p):
    keep = np.random.default_rng(1).random(3000) >= p
    # gaps longer than max_gap_s are a stop, not loss: allow them here to count everything
    est = feed(keep, jitter=0.002, max_gap_s=10.0)
    r = est.report()
    received = np.flatnonzero(keep)
    true_lost = int((~keep[received[0]:received[-1] + 1]).sum())  # between the first and the last received
    assert r.period_s == pytest.approx(PERIOD, rel=0.05)
    assert abs(r.total_lost - true_lost) <= 0.03 * true_lost + 10
    assert r.loss_fraction == pytest.approx(p, abs=0.1)


def test_bursts_are_counted_exactly():
    keep = np.ones(900, bool)
    for start in range(40, 900, 60):
        keep[start:start + 5] = False  # 5 frames (167 ms) lost every 2 s
    r = feed(keep).report()
    assert r.total_lost == 5 * len(range(40, 900, 60))


def test_periodic_loss_every_third_frame():
    keep = np.arange(900) % 3 != 2
    r = feed(keep).report()
    assert r.period_s == pytest.approx(PERIOD, rel=0.01)
    assert r.loss_fraction == pytest.approx(1 / 3, abs=0.02)


def test_every_other_frame_lost_looks_like_a_half_rate_camera():
    """Stamps alone cannot tell a half-rate camera from one that loses every other frame (documented)."""
    r = feed(np.arange(600) % 2 == 0).report()
    assert r.period_s == pytest.approx(2 * PERIOD, rel=0.01) and r.lost == 0


def test_a_real_stop_is_not_loss():
    keep = np.ones(900, bool)
    keep[300:600] = False  # 10 s stop, then the camera comes back
    r = feed(keep, max_gap_s=0.5).report()
    assert r.total_lost == 0


def test_an_odd_short_interval_does_not_become_the_period():
    est = StreamLossEstimator()
    stamps = list(T0 + np.arange(100) * PERIOD)
    stamps.insert(50, stamps[49] + 0.001)  # a driver hiccup: one frame stamped 1 ms after the previous
    for s in stamps:
        est.observe(s)
    assert est.report().period_s == pytest.approx(PERIOD, rel=0.01)
    assert est.report().total_lost == 0


def test_stamps_going_back_restart_the_estimate():
    est = StreamLossEstimator()
    for s in T0 + np.arange(50) * PERIOD:
        est.observe(s)
    est.observe(T0)  # bag loop
    assert est.restarts == 1 and est.report().period_s is None
    for s in T0 + (1 + np.arange(20)) * PERIOD:
        est.observe(s)
    assert est.report().period_s == pytest.approx(PERIOD, rel=0.01)


def test_non_finite_stamp_is_rejected():
    with pytest.raises(ValueError, match="finite"):
        StreamLossEstimator().observe(float("nan"))
