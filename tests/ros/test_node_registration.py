"""The node's background registration check over real ROS: a stream whose EO is shifted by 12 px against
IR (three views, as a driving robot sees them) brings the registration WARN to /diagnostics; the
registered stream does not."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tests.support.rig_scenes import ir_view, scene

pytestmark = pytest.mark.ros
SIZE = (320, 240)  # (width, height), both cameras: co-aligned, no homography


def stream(driver, views, seconds: float, rate: float = 10.0, hold_s: float = 1.0) -> None:
    """A driving robot: each (EO, IR) view held for `hold_s`, in turn, with fresh sensor noise each frame
    (so EO never looks frozen). The verdict needs two views: one view held still is one piece of evidence."""
    rng = np.random.default_rng(0)
    start = time.monotonic()
    end = start + seconds
    while time.monotonic() < end:
        eo, ir = views[int((time.monotonic() - start) / hold_s) % len(views)]
        t = time.time()
        noisy_eo = np.clip(eo + rng.normal(0, 2, eo.shape), 0, 255).astype(np.uint8)
        noisy_ir = np.clip(ir + rng.normal(0, 2, ir.shape), 0, 255).astype(np.uint8)
        driver.pub_eo.publish(driver.image(noisy_eo, "rgb8", t, "eo_optical"))
        driver.pub_ir.publish(driver.image(noisy_ir, "mono8", t, "ir_optical"))
        time.sleep(1.0 / rate)


@pytest.mark.parametrize("shift_px", [12, 0])
def test_a_12_px_misregistration_warns_and_the_registered_stream_does_not(node, shift_px):
    proc, d = node({"registration.check_period_s": 0.5})
    views = []
    for seed in (7, 8, 9):
        eo, radiance = scene(seed, size=SIZE)
        views.append((np.roll(eo, shift_px, axis=1).astype(np.float32),
                      ir_view(radiance, np.eye(3), seed, size=SIZE).astype(np.float32)))
    stream(d, views, seconds=5.0)
    assert d.wait_for(lambda: (d.latest_diagnostic() or {}).get("registration_state") not in (None, "waiting"), 5)
    diag = d.latest_diagnostic()
    if shift_px:
        assert diag["registration_state"] == "misregistered", diag
        assert diag["level"] == 1 and "registration off by" in diag["message"], diag["message"]
        assert "python -m csk_ros.calibrate" in diag["message"]
        assert abs(float(diag["registration_offset_px"]) - shift_px) <= 2, diag["registration_offset_px"]
    else:
        assert diag["registration_state"] == "ok", diag
        assert "registration" not in diag["message"], diag["message"]
    assert float(diag["registration_check_ms_p50"]) > 0 and proc.poll() is None
