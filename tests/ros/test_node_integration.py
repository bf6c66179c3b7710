"""The segment node for real: a subprocess on real ROS 2 (PyPI wheels),
driven from this process over loopback with a tiny bundle."""

import math
import time

import numpy as np
import pytest

from csk_ros.logic.health import EoHealthMonitor, HealthParams
from csk_ros.logic.pairing import stamp_seconds
from csk_ros.logic.stream_loss import StreamLossEstimator
from harness.stream_client import scene, start_node, stop_node
from tests.support.node_harness import FAST, PERIOD, Camera, H, W, first_mode, mask_stamps  # noqa: F401


def test_fused_masks_carry_the_ir_header_and_ir_size(node):
    from sensor_msgs.msg import Image

    _, d = node()
    overlays = []
    d.node.create_subscription(Image, "/segment_node/overlay", overlays.append, 5)
    time.sleep(0.5)  # let the node see the overlay subscriber
    cam = Camera(d)
    cam.run(20)
    assert d.wait_for(lambda: len(d.masks) >= 20, 10)
    assert d.wait_for(lambda: len(overlays) > 0, 3), "no ~/overlay while subscribed"
    assert (overlays[-1].encoding, overlays[-1].width, overlays[-1].height) == ("bgr8", W, H)
    assert overlays[-1].header.frame_id == "ir_optical"
    with d.lock:
        mask = d.masks[-1][1]
        conf = d.confidences[-1][1]
    assert (mask.width, mask.height, mask.encoding) == (W, H, "mono8")
    assert mask.header.frame_id == "ir_optical" and conf.header.frame_id == "ir_optical"
    assert np.frombuffer(mask.data, np.uint8).max() < 9
    stamps = mask_stamps(d)
    assert all(any(abs(s - i) < 1e-6 for i in cam.ir_stamps) for s in stamps), "mask stamp is not an IR stamp"
    assert first_mode(d, "fused") is not None
    diag = d.latest_diagnostic()
    assert diag["backend"] == "onnxruntime" and float(diag["ir_rate_hz"]) > 5


def node_stale_limit(eo_stamps):
    """The EO stale limit the node computes from these stamps: its own period estimator, fed in the same
    order, and its health monitor's rule."""
    estimator = StreamLossEstimator()
    for t in eo_stamps:
        estimator.observe(t)
        estimator.period()  # the node reads it per frame; the estimate refreshes on its own schedule
    monitor = EoHealthMonitor(HealthParams(eo_timeout_s=FAST["health.eo_timeout_s"]))
    monitor.set_periods(estimator.period(), None)
    return monitor.stale_limit("eo")


def node_delay(d, since):
    """The longest a mask of an IR frame stamped after `since` took from the camera to this process: it
    bounds what the node adds (delivery, queue, inference) to any decision it took for those frames, so the
    timing bounds below stretch with the machine's load instead of failing under it."""
    with d.lock:
        received = [(recv, stamp_seconds(m.header.stamp)) for recv, m in d.masks]
    return max((recv - stamp for recv, stamp in received if stamp >= since), default=0.0)


def test_eo_loss_switches_within_timeout_and_recovery_needs_frames(node):
    _, d = node()
    cam = Camera(d)
    cam.run(15)
    assert d.wait_for(lambda: first_mode(d, "fused") is not None, 5)
    last_eo = cam.eo_times[-1]
    cam.run(20, eo=False)
    assert d.wait_for(lambda: len(mask_stamps(d)) == len(cam.ir_stamps), 3)
    switch = first_mode(d, "ir_only", after=last_eo)
    assert switch is not None
    # no earlier than the limit; no later than the first IR frame past it, plus what the node was behind
    stale_limit = node_stale_limit(cam.eo_times)
    ir_gaps = [b - a for a, b in zip(cam.ir_stamps, cam.ir_stamps[1:]) if a >= last_eo]
    late_by = max(ir_gaps) + node_delay(d, last_eo) + 0.02
    assert stale_limit - 0.02 <= switch["since"] - last_eo <= stale_limit + late_by, (stale_limit, late_by)
    assert d.wait_for(lambda: first_mode(d, "ir_only", after=last_eo, reason="eo_stale") is not None, 2)
    resumed = cam.run(12)
    assert d.wait_for(lambda: first_mode(d, "fused", after=resumed[0]) is not None, 3)
    back = first_mode(d, "fused", after=resumed[0])
    frames_before_fused = sum(1 for t in resumed if t <= back["since"] + 1e-3)
    # frames the camera sent while the node was still behind also count here: as many as its delay holds
    behind = math.ceil(node_delay(d, resumed[0]) / PERIOD)
    assert FAST["health.recover_frames"] <= frames_before_fused <= FAST["health.recover_frames"] + 2 + behind
    time.sleep(0.5)
    # every IR frame got exactly one mask (the tiny model keeps up at 20 Hz)
    assert sorted(round(s, 6) for s in mask_stamps(d)) == sorted(round(s, 6) for s in cam.ir_stamps)


def test_fade_to_black_and_frozen_eo_go_ir_only(node):
    _, d = node()
    cam = Camera(d)
    cam.run(12)
    assert d.wait_for(lambda: first_mode(d, "fused") is not None, 5)
    fade_start = time.time()
    for k in range(8):
        cam.step(dark=0.5 ** (k + 1))
    assert d.wait_for(lambda: first_mode(d, "ir_only", after=fade_start, reason="eo_dark") is not None, 2)
    recovered = cam.run(10)
    assert d.wait_for(lambda: first_mode(d, "fused", after=recovered[0]) is not None, 3)
    frozen_start = time.time()
    still, _ = scene(H, W, 123.0)
    cam.run(6, eo_image=still)
    assert d.wait_for(lambda: first_mode(d, "ir_only", after=frozen_start, reason="eo_frozen") is not None, 2)


def test_ir_loss_stops_masks_and_reports_error(node):
    _, d = node()
    cam = Camera(d)
    cam.run(10)
    assert d.wait_for(lambda: len(d.masks) >= 10, 5)
    cam.run(15, ir=False)
    count = len(d.masks)
    time.sleep(0.5)
    assert len(d.masks) == count, "masks kept coming without IR"
    assert d.wait_for(lambda: (d.latest_diagnostic() or {}).get("level") == 2, 3)
    diag = d.latest_diagnostic()
    assert "no IR input" in diag["message"] and diag["mode"] == "no_input"
    assert first_mode(d, "no_input", reason="ir_stale") is not None


def test_two_hundred_malformed_messages_are_counted_and_survived(node):
    proc, d = node()
    good_eo, good_ir = scene(H, W, 1.0)
    bad = []
    for k in range(200):
        msg = d.image(good_ir, "mono8", time.time(), "ir_optical")
        kind = k % 4
        if kind == 0:
            msg.step = W - 1  # step shorter than a row
        elif kind == 1:
            msg.data = msg.data[: len(msg.data) // 2]  # truncated
        elif kind == 2:
            msg.encoding = "yuv422_weird"
        else:
            msg.width = 0
        bad.append(msg)
    for k, msg in enumerate(bad):
        (d.pub_ir if k % 2 else d.pub_eo).publish(msg)
        time.sleep(0.005)  # a reliable KEEP_LAST(5) writer overwrites what a loaded reader has not acknowledged
    # IR arrives but none of it decodes: diagnostics must say so, not just "no IR"
    assert d.wait_for(lambda: "rejected (truncated, zero_size)" in (d.latest_diagnostic() or {}).get("message", ""),
                      2), d.latest_diagnostic()
    assert d.wait_for(lambda: int((d.latest_diagnostic() or {}).get("rejected_total", 0)) >= 200, 10)
    diag = d.latest_diagnostic()
    assert int(diag["rejected_total"]) == 200
    # even k went to EO, odd k to IR: bad_step (k % 4 == 0) and unknown encoding (k % 4 == 2) hit EO,
    # truncated (1) and zero size (3) hit IR
    assert int(diag["rejected_eo_bad_step"]) == 50 and int(diag["rejected_eo_unknown_encoding"]) == 50
    assert int(diag["rejected_ir_truncated"]) == 50 and int(diag["rejected_ir_zero_size"]) == 50
    assert proc.poll() is None, "node died"
    cam = Camera(d)
    cam.run(5)
    assert d.wait_for(lambda: len(d.masks) >= 5, 5), "node stopped segmenting after bad input"


def test_sim_time_and_backward_clock_jump(node, tiny_bundle):
    _, d = node({"use_sim_time": True})
    sim = 1000.0
    eo, ir = scene(H, W, 0.0)

    def tick(t, pair=True):
        d.publish_clock(t)
        time.sleep(0.005)
        eo_img, ir_img = scene(H, W, t)
        if pair:
            d.pub_eo.publish(d.image(eo_img, "rgb8", t, "eo_optical"))
        d.pub_ir.publish(d.image(ir_img, "mono8", t, "ir_optical"))
        time.sleep(PERIOD)

    for k in range(15):
        tick(sim + k * PERIOD)
    assert d.wait_for(lambda: any(abs(s - (sim + 14 * PERIOD)) < 1e-6 for s in mask_stamps(d)), 5)
    assert first_mode(d, "fused", after=sim) is not None
    # bag loop: time jumps back 10 s
    jump = sim - 10.0
    for k in range(15):
        tick(jump + k * PERIOD)
    assert d.wait_for(lambda: any(abs(s - (jump + 14 * PERIOD)) < 1e-6 for s in mask_stamps(d)), 5), \
        "no masks after the clock jumped back"
    assert d.wait_for(lambda: int((d.latest_diagnostic() or {}).get("clock_resets", 0)) >= 1, 5)
    assert any(p["mode"] == "fused" and jump <= p["since"] < sim for p in d.mode_payloads()), \
        "never back to fused on the new timeline"


@pytest.mark.parametrize("params, message", [
    ({"model_dir": ""}, "parameter 'model_dir' is required"),
    ({"health.recover_frames": 0}, "health.recover_frames"),
    ({"backend": "cuda"}, "parameter 'backend' must be one of"),
    ({"eo_to_ir_homography": [1.0, 0.0, 0.0]}, "needs 9 numbers"),
    ({"health.eo_timout_s": 1.0}, "unknown parameter(s) ['health.eo_timout_s']"),
    ({"precision": "int8"}, "python -m engines.quantize"),  # a bundle without INT8 graphs
    ({"precision": "fp16"}, "parameter 'precision' must be one of"),
])
def test_bad_parameters_fail_at_start_with_a_clear_message(tiny_bundle, ros_env, params, message):
    proc = start_node(tiny_bundle, ros_env, dict(FAST, **params))
    try:
        proc.wait(timeout=60)
    finally:
        out = stop_node(proc)
    assert proc.returncode == 2, out
    assert message in out


def test_bad_bundle_fails_at_start(tmp_path, ros_env):
    proc = start_node(tmp_path / "missing_bundle", ros_env, FAST)
    proc.wait(timeout=60)
    out = stop_node(proc)
    assert proc.returncode == 2 and "model bundle directory not found" in out
    said = [line for line in out.splitlines() if "model bundle directory not found" in line]
    assert len(said) == 1 and said[0].startswith("[segment_node] start-up failed: "), said  # one line, not two


def test_eo_at_half_rate_warns_without_flapping_the_mode(node):
    _, d = node()
    cam = Camera(d)
    for k in range(40):
        cam.step(eo=(k % 2 == 0))
    assert d.wait_for(lambda: "had no EO partner" in (d.latest_diagnostic() or {}).get("message", ""), 3), \
        d.latest_diagnostic()
    assert d.latest_diagnostic()["level"] == 1  # WARN
    fused = first_mode(d, "fused")
    assert fused is not None
    later = [p for p in d.mode_payloads() if p["since"] > fused["since"]]
    assert later == [], f"~/mode flapped: {later}"
    assert d.wait_for(lambda: len(d.masks) == len(cam.ir_stamps), 3)
